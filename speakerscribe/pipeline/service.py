"""The transcription endpoint's logic, free of Ray: decode, separate, chunk, fan out, merge.

``TranscriptionService`` talks to the model stages through the small ``Stages``
protocol. The ingress deployment implements it with DeploymentHandles; unit tests
implement it with fakes. Blocking work (decoding, VAD) runs in a thread so the
event loop keeps serving other requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from speakerscribe.audio import decode_audio_bytes, decode_audio_channels
from speakerscribe.budget import AudioBudget, Reservation, declared_duration_s
from speakerscribe.chunking import Piece, stitch
from speakerscribe.diarization.known_speakers import decode_reference
from speakerscribe.formats import TranscriptionResult, logprobs_out
from speakerscribe.pipeline.assembly import assemble_result, plan_pieces
from speakerscribe.pipeline.deadlines import StageDeadlines
from speakerscribe.pipeline.prepared import PreparedAudio, StageClock
from speakerscribe.pipeline.requests import check_request, resolve_model
from speakerscribe.pipeline.stages import (
    PieceCache,
    Progress,
    Stages,
    no_progress,
)
from speakerscribe.protocol import TranscriptionRequest
from speakerscribe.settings import Settings
from speakerscribe.types import SAMPLE_RATE, Diarization, DiarizationOptions, Segment
from speakerscribe.whisper.options import DecodeOptions

LANGUAGE_WINDOW = 30 * SAMPLE_RATE
"""Audio language detection reads: Whisper's one window from the first speech."""


class TranscriptionService:
    """``POST /v1/audio/transcriptions`` without the HTTP: bytes + request → result."""

    def __init__(
        self,
        settings: Settings,
        stages: Stages,
        budget: AudioBudget | None = None,
        queue_for_budget: bool = False,
    ):
        """``budget``: this replica's audio budget (a new one from settings if not given);
        ``queue_for_budget``: wait for room (background jobs) instead of answering 503."""
        self.settings = settings
        self.stages = stages
        self.budget = budget or AudioBudget(settings.audio_budget_s or float("inf"))
        self.queue_for_budget = queue_for_budget
        self.deadlines = StageDeadlines(
            settings.stage_timeout_s, settings.stage_timeout_per_audio_s
        )

    async def _admit(self, data: bytes) -> Reservation:
        """Reserve the upload's declared length before decoding any of it."""
        declared = await asyncio.to_thread(declared_duration_s, data)
        seconds = min(declared or 0.0, self.settings.max_audio_duration_s)
        if self.queue_for_budget:
            return await self.budget.reserve_waiting(seconds)
        return self.budget.reserve(seconds)

    def resolve_model(self, requested: str | None) -> str:
        """The request's ``model`` → a served model id (aliases such as ``whisper-1`` too)."""
        return resolve_model(self.settings, requested)

    async def prepare(
        self,
        data: bytes,
        request: TranscriptionRequest,
        task: str = "transcribe",
        progress: Progress = no_progress,
        pieces_in_flight: int | None = None,
        pieces: PieceCache | None = None,
    ) -> PreparedAudio:
        """Everything that can fail on bad input: validate, decode, separate, chunk.

        Streaming answers call this before sending headers, so bad input still gets a 4xx.
        ``pieces_in_flight`` caps the pieces at the Transcriber at once (background jobs use
        a smaller cap than the ``request_pieces_in_flight`` setting); ``pieces`` hands
        back the ones an earlier attempt of a job already decoded, and keeps new ones.
        """
        model = check_request(self.settings, request)
        references = {
            name: await asyncio.to_thread(decode_reference, url, index)
            for index, (name, url) in enumerate(
                zip(request.known_speaker_names, request.known_speaker_references, strict=True)
            )
        }
        clock = StageClock()
        progress("decoding", 0.0)
        reservation = await self._admit(data)
        try:
            prepared = await self._prepare_admitted(
                data, request, model, references, clock, reservation, task, progress
            )
        except BaseException:
            reservation.release()
            raise
        prepared.release = reservation.release
        weakref.finalize(prepared, reservation.release)  # a stream that never started
        if prepared.diarizing is not None:
            weakref.finalize(prepared, prepared.diarizing.cancel)
        # a long upload's pieces go to the Transcriber a few at a time, not all at once:
        # each one in flight is a copy in the object store and in the Transcriber's queue
        prepared.pieces_in_flight = asyncio.Semaphore(
            pieces_in_flight or self.settings.request_pieces_in_flight
        )
        if pieces is not None:
            pieces.planned(sum(len(plan) for plan in prepared.plans))
            prepared.pieces = pieces
        return prepared

    async def _prepare_admitted(
        self,
        data: bytes,
        request: TranscriptionRequest,
        model: str,
        references: dict[str, np.ndarray],
        clock: StageClock,
        reservation: Reservation,
        task: str,
        progress: Progress,
    ) -> PreparedAudio:
        limit = self.settings.max_audio_duration_s
        with clock.measure("decode"):
            grow = reservation.grow_to
            if request.multichannel:
                tracks = await asyncio.to_thread(
                    decode_audio_channels, data, max_duration_s=limit, on_decoded=grow
                )
            else:
                mix = await asyncio.to_thread(
                    decode_audio_bytes, data, max_duration_s=limit, on_decoded=grow
                )
                tracks = [mix]
        if request.enable_vocal_separation:
            progress("separation", 0.0)
            with clock.measure("separation"):
                tracks = list(
                    await self.deadlines.within(
                        "separation",
                        asyncio.gather(*[self.stages.separate(t) for t in tracks]),
                        tracks[0].shape[0],
                    )
                )
        diarize = request.wants_diarization(self.settings.enable_speaker_diarization)
        diarization = DiarizationOptions(
            num_speakers=request.num_speakers,
            min_speakers=request.min_speakers,
            max_speakers=request.max_speakers,
            known_speakers=references,
            detect_overlap=request.enable_overlap_detection,
        )
        diarizing = (
            asyncio.ensure_future(self._diarize(tracks[0], diarization, clock))
            if diarize and not request.multichannel
            else None
        )
        try:
            with clock.measure("chunking"):
                plans = [
                    [
                        p
                        for p in await asyncio.to_thread(
                            plan_pieces, self.settings, track, request.chunking_strategy
                        )
                        if p.has_speech
                    ]
                    for track in tracks
                ]
            options = DecodeOptions(
                model=model,
                language=await self._language(request, model, tracks, plans),
                task=task,  # type: ignore[arg-type]
                prompt=request.prompt,
                temperature=request.temperature,
                word_timestamps=diarize or request.wants_words(),
                beam_size=self.settings.beam_size,
                logprobs=request.wants_logprobs,
            )
        except BaseException:
            if diarizing is not None:
                diarizing.cancel()
            raise
        progress("transcription", 0.0)
        return PreparedAudio(
            request,
            tracks,
            plans,
            options,
            diarize,
            clock,
            diarization,
            progress,
            diarizing=diarizing,
        )

    async def transcribe(
        self,
        data: bytes,
        request: TranscriptionRequest,
        task: str = "transcribe",
        progress: Progress = no_progress,
        pieces_in_flight: int | None = None,
        pieces: PieceCache | None = None,
    ) -> TranscriptionResult:
        """Decode once; per track (the mix, or each channel): separate, chunk, transcribe.

        The diarizer runs on the whole mix concurrently with transcription; with
        ``multichannel`` each channel is its own speaker and no diarizer is needed.
        """
        prepared = await self.prepare(data, request, task, progress, pieces_in_flight, pieces)
        try:
            return await self._run_prepared(prepared, progress)
        finally:
            prepared.cancel_diarizing()
            prepared.release()

    async def _run_prepared(
        self, prepared: PreparedAudio, progress: Progress
    ) -> TranscriptionResult:
        if prepared.diarizing is not None:

            async def transcribed_then_diarizing() -> list[list[Segment]]:
                segments = await self._transcribe_tracks(prepared)
                progress("diarization", 1.0)  # all that can be left is the diarizer
                return segments

            # together, so that a failing diarizer ends the request at once
            track_segments, diarization = await asyncio.gather(
                transcribed_then_diarizing(), prepared.diarizing
            )
        else:
            track_segments, diarization = await self._transcribe_tracks(prepared), Diarization([])
        progress("merge", 1.0)
        return assemble_result(prepared, track_segments, diarization)

    async def stream_events(self, prepared: PreparedAudio) -> AsyncIterator[dict]:
        """OpenAI's transcription stream: text deltas in audio order as pieces finish,
        then (with diarization) one ``transcript.text.segment`` per segment, then done.
        """
        try:
            async for event in self._stream_events(prepared):
                yield event
        finally:
            prepared.cancel_diarizing()
            prepared.release()

    async def _stream_events(self, prepared: PreparedAudio) -> AsyncIterator[dict]:
        if prepared.request.multichannel:  # channels interleave: answer once they are all in
            result = assemble_result(
                prepared, await self._transcribe_tracks(prepared), Diarization([])
            )
            deltas = [s.text for s in result.segments]
        else:
            track, pieces = prepared.tracks[0], prepared.plans[0]
            tasks = [
                asyncio.ensure_future(
                    self.stages.transcribe(track[p.start : p.end], prepared.options)
                )
                for p in pieces
            ]
            diarization = prepared.diarizing
            deltas, results = [], []
            deadline = asyncio.get_running_loop().time() + self.deadlines.for_audio(track.shape[0])
            try:
                for task in tasks:
                    remaining = deadline - asyncio.get_running_loop().time()
                    segments = await self.deadlines.within(
                        "transcription", task, track.shape[0], remaining
                    )
                    results.append(segments)
                    delta = "".join(s.text for s in segments)
                    if not deltas:
                        delta = delta.lstrip()
                    if delta:
                        deltas.append(delta)
                        event: dict[str, Any] = {"type": "transcript.text.delta", "delta": delta}
                        if prepared.options.logprobs:
                            event["logprobs"] = logprobs_out(segments)
                        yield event
                diarized = await diarization if diarization else Diarization([])
            finally:
                for pending in tasks:
                    pending.cancel()
                prepared.cancel_diarizing()
            result = assemble_result(prepared, [stitch(pieces, results)], diarized)
        if result.diarized:
            for segment in result.segments:
                yield {
                    "type": "transcript.text.segment",
                    "id": f"seg_{segment.id}",
                    "start": segment.start,
                    "end": segment.end,
                    "text": segment.text.strip(),
                    "speaker": segment.speaker,
                }
        if prepared.request.multichannel:
            for delta in deltas:
                yield {"type": "transcript.text.delta", "delta": delta}
        yield {
            "type": "transcript.text.done",
            "text": "".join(deltas),
            "usage": {"type": "duration", "seconds": result.duration},
        }

    async def _transcribe_tracks(self, prepared: PreparedAudio) -> list[list[Segment]]:
        """Every track's pieces to the Transcriber at once, under one deadline."""
        with prepared.clock.measure("transcription"):
            return list(
                await self.deadlines.within(
                    "transcription",
                    asyncio.gather(
                        *[
                            self._transcribe_track(index, t, plan, prepared)
                            for index, (t, plan) in enumerate(
                                zip(prepared.tracks, prepared.plans, strict=True)
                            )
                        ]
                    ),
                    prepared.tracks[0].shape[0],
                )
            )

    async def _diarize(
        self, mix: np.ndarray, options: DiarizationOptions, clock: StageClock
    ) -> Diarization:
        with clock.measure("diarization"):
            return await self.deadlines.within(
                "diarization", self.stages.diarize(mix, options), mix.shape[0]
            )

    async def _language(
        self,
        request: TranscriptionRequest,
        model: str,
        tracks: list[np.ndarray],
        plans: list[list[Piece]],
    ) -> str:
        """The request's language, else detected on the first speech.

        The Transcriber answers "en" at once for English-only models.
        """
        if request.language:
            return request.language
        for track, plan in zip(tracks, plans, strict=True):
            if plan:
                # Whisper reads 30 s: send no more (the rest of a long file is hundreds of MB)
                first = track[plan[0].start : plan[0].start + LANGUAGE_WINDOW]
                detection = self.stages.detect_language(first, model)
                return await self.deadlines.within("language detection", detection, 0)
        return "en"

    async def _transcribe_track(
        self, track: int, audio: np.ndarray, pieces: list[Piece], prepared: PreparedAudio
    ) -> list[Segment]:
        """All pieces of one track go to the Transcriber at once, so they can share batches."""
        results = await asyncio.gather(
            *[self._transcribe_piece(track, audio, p, prepared) for p in pieces]
        )
        return stitch(pieces, list(results))

    async def _transcribe_piece(
        self, track: int, audio: np.ndarray, piece: Piece, prepared: PreparedAudio
    ) -> list[Segment]:
        cache = prepared.pieces
        segments = cache.reuse(track, piece) if cache is not None else None
        if segments is None:
            async with prepared.pieces_in_flight or contextlib.nullcontext():
                segments = await self.stages.transcribe(
                    audio[piece.start : piece.end], prepared.options
                )
            if cache is not None:
                await cache.keep(track, piece, segments)
        prepared.piece_done(piece)
        return segments
