"""The transcription endpoint's logic, free of Ray: decode, separate, chunk, fan out, merge.

``TranscriptionService`` talks to the model stages through the small ``Stages``
protocol. The ingress deployment implements it with DeploymentHandles; unit tests
implement it with fakes. Blocking work (decoding, VAD) runs in a thread so the
event loop keeps serving other requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from speakerscribe.alignment import attribute_speakers, merge_channels
from speakerscribe.audio import decode_audio_bytes, decode_audio_channels, duration_s
from speakerscribe.budget import AudioBudget, Reservation, declared_duration_s
from speakerscribe.chunking import Piece, split_audio, split_utterances, stitch
from speakerscribe.errors import (
    InvalidRequestError,
    ModelNotFoundError,
    OverloadedError,
    StageTimeoutError,
)
from speakerscribe.formats import TranscriptionResult, logprobs_out
from speakerscribe.overlap import flag_overlaps
from speakerscribe.protocol import ServerVadChunking, TranscriptionRequest
from speakerscribe.settings import Settings
from speakerscribe.speakers import decode_reference
from speakerscribe.transcription import DecodeOptions
from speakerscribe.types import SAMPLE_RATE, Diarization, DiarizationOptions, Segment


class Stages(Protocol):
    """The model stages as the ingress sees them (each may live on another node)."""

    async def separate(self, audio: np.ndarray) -> np.ndarray: ...

    async def detect_language(self, audio: np.ndarray, model: str) -> str: ...

    async def transcribe(self, piece: np.ndarray, options: DecodeOptions) -> list[Segment]: ...

    async def diarize(self, audio: np.ndarray, options: DiarizationOptions) -> Diarization: ...


class Progress(Protocol):
    """Told the current stage and the fraction of the audio transcribed so far (jobs)."""

    def __call__(self, stage: str, fraction: float) -> None: ...


class PieceCache(Protocol):
    """Pieces an earlier attempt already decoded (background jobs resume from them)."""

    def planned(self, pieces: int) -> None: ...

    def reuse(self, track: int, piece: Piece) -> list[Segment] | None: ...

    async def keep(self, track: int, piece: Piece, segments: list[Segment]) -> None: ...


def _no_progress(stage: str, fraction: float) -> None:
    pass


class StageClock:
    """Wall seconds per stage, reported back to the client in a Server-Timing header."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def measure(self, stage: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started


def server_timing(seconds: dict[str, float]) -> str:
    """``Server-Timing`` header value: which stages ran and how long each took (ms)."""
    return ", ".join(f"{name};dur={value * 1000:.1f}" for name, value in seconds.items())


@dataclass
class PreparedAudio:
    """A request after decoding, separation and chunking: ready to fan out."""

    request: TranscriptionRequest
    tracks: list[np.ndarray]
    plans: list[list[Piece]]
    options: DecodeOptions
    diarize: bool
    clock: StageClock
    diarization: DiarizationOptions
    progress: Progress = _no_progress
    pieces_in_flight: asyncio.Semaphore | None = None
    pieces: PieceCache | None = None
    transcribed_s: float = 0.0
    release: Callable[[], None] = lambda: None
    """Gives the request's decoded seconds back to the audio budget (idempotent)."""
    diarizing: asyncio.Future[Diarization] | None = None
    """The diarizer's answer on the whole mix, started as soon as the audio was decoded
    (and separated): it needs neither the chunking nor the language."""

    def cancel_diarizing(self) -> None:
        """Stop a diarizer nobody will read; a failure it already had is consumed."""
        if self.diarizing is None:
            return
        if not self.diarizing.done():
            self.diarizing.cancel()
        elif not self.diarizing.cancelled():
            self.diarizing.exception()

    @property
    def planned_s(self) -> float:
        return sum(p.duration_s for plan in self.plans for p in plan) or 1.0

    def piece_done(self, piece: Piece) -> None:
        self.transcribed_s += piece.duration_s
        self.progress("transcription", min(self.transcribed_s / self.planned_s, 1.0))

    @property
    def runs_diarizer(self) -> bool:
        return self.diarize and not self.request.multichannel


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

    async def _admit(self, data: bytes) -> Reservation:
        """Reserve the upload's declared length before decoding any of it."""
        declared = await asyncio.to_thread(declared_duration_s, data)
        seconds = min(declared or 0.0, self.settings.max_audio_duration_s)
        if self.queue_for_budget:
            return await self.budget.reserve_waiting(seconds)
        return self.budget.reserve(seconds)

    def resolve_model(self, requested: str | None) -> str:
        """The request's ``model`` → a served model id (aliases such as ``whisper-1`` too)."""
        if requested in (None, ""):
            return self.settings.model_id
        if requested in self.settings.served_models:
            return requested
        aliases = self.settings.resolved_aliases
        if requested in aliases:
            return aliases[requested]
        available = ", ".join(repr(m) for m in self.settings.model_ids)
        raise ModelNotFoundError(
            f"model {requested!r} is not served here; available: {available}", param="model"
        )

    def check_speaker_limits(self, request: TranscriptionRequest) -> None:
        limit = self.settings.max_speakers_limit
        for name in ("num_speakers", "min_speakers", "max_speakers"):
            value = getattr(request, name)
            if value is not None and value > limit:
                raise InvalidRequestError(
                    f"{name} must be at most {limit} (the server's max_speakers_limit)", param=name
                )

    def check_known_speakers(self, request: TranscriptionRequest) -> None:
        limit = self.settings.max_known_speakers
        if len(request.known_speaker_names) > limit:
            raise InvalidRequestError(
                f"at most {limit} known speakers per request (the server's max_known_speakers)",
                param="known_speaker_names",
            )
        if request.known_speaker_names and request.multichannel:
            raise InvalidRequestError(
                "known speakers name diarized speakers; multichannel audio is not diarized",
                param="known_speaker_names",
            )

    async def prepare(
        self,
        data: bytes,
        request: TranscriptionRequest,
        task: str = "transcribe",
        progress: Progress = _no_progress,
        pieces_in_flight: int | None = None,
        pieces: PieceCache | None = None,
    ) -> PreparedAudio:
        """Everything that can fail on bad input: validate, decode, separate, chunk.

        Streaming answers call this before sending headers, so bad input still gets a 4xx.
        ``pieces_in_flight`` caps the pieces at the Transcriber at once (background jobs use
        a smaller cap than the ``request_pieces_in_flight`` setting); ``pieces`` hands
        back the ones an earlier attempt of a job already decoded, and keeps new ones.
        """
        model = self.resolve_model(request.model)
        self.check_speaker_limits(request)
        self.check_known_speakers(request)
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
                    await self._within(
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
                            self._plan, track, request.chunking_strategy
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
        progress: Progress = _no_progress,
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
        return self._finish(prepared, track_segments, diarization)

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
            result = self._finish(
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
            deadline = asyncio.get_running_loop().time() + self._budget(track.shape[0])
            try:
                for task in tasks:
                    remaining = deadline - asyncio.get_running_loop().time()
                    segments = await self._within("transcription", task, track.shape[0], remaining)
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
            result = self._finish(prepared, [stitch(pieces, results)], diarized)
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
                await self._within(
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
            return await self._within(
                "diarization", self.stages.diarize(mix, options), mix.shape[0]
            )

    def _finish(
        self,
        prepared: PreparedAudio,
        track_segments: list[list[Segment]],
        diarization: Diarization,
    ) -> TranscriptionResult:
        multichannel = prepared.request.multichannel
        with prepared.clock.measure("merge"):
            if multichannel:
                segments = merge_channels(track_segments)
            elif prepared.runs_diarizer:
                names = set(prepared.diarization.known_speakers)
                segments = attribute_speakers(track_segments[0], diarization.turns, keep=names)
            else:
                segments = track_segments[0]
            if prepared.diarization.detect_overlap:
                flag_overlaps(segments, diarization.overlaps)
        return TranscriptionResult(
            duration=duration_s(prepared.tracks[0]),
            language=prepared.options.language or "en",
            segments=segments,
            task=prepared.options.task,
            diarized=prepared.diarize or multichannel,
            stage_seconds=prepared.clock.seconds,
            logprobs=prepared.options.logprobs,
            overlap=prepared.diarization.detect_overlap,
            identified=diarization.identified,
        )

    def _plan(
        self, audio: np.ndarray, strategy: ServerVadChunking | str | None = None
    ) -> list[Piece]:
        """Default and ``auto``: ≤ 30 s pieces cut at pauses, tiling the audio;
        ``server_vad``: one piece per utterance, with the client's VAD settings."""
        if isinstance(strategy, ServerVadChunking):
            return split_utterances(
                audio,
                threshold=strategy.threshold,
                prefix_padding_ms=strategy.prefix_padding_ms,
                silence_duration_ms=strategy.silence_duration_ms,
                max_piece_s=self.settings.max_piece_s,
            )
        return split_audio(
            audio,
            max_piece_s=self.settings.max_piece_s,
            search_window_s=self.settings.cut_search_window_s,
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
                return await self._within("language detection", detection, 0)
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

    def _budget(self, num_samples: int) -> float:
        """A stage's deadline grows with the audio: long files are slow, not stuck."""
        seconds = num_samples / SAMPLE_RATE
        return self.settings.stage_timeout_s + self.settings.stage_timeout_per_audio_s * seconds

    async def _within(self, stage: str, awaitable, num_samples: int, budget: float | None = None):
        """Await a stage under its deadline (504), and turn a lost replica into a 503."""
        budget = self._budget(num_samples) if budget is None else budget
        try:
            return await asyncio.wait_for(awaitable, timeout=max(budget, 0.001))
        except TimeoutError:
            raise StageTimeoutError(
                f"{stage} took longer than its {budget:.0f} s deadline"
            ) from None
        except Exception as error:
            if _is_lost_replica(error):
                raise OverloadedError(
                    f"a {stage} replica failed while serving this request; retry shortly",
                    code="replica_failed",
                ) from None
            raise


def _is_lost_replica(error: BaseException) -> bool:
    """Ray's actor-death errors, recognised by name so this module stays free of Ray."""
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"RayActorError", "ActorDiedError", "ActorUnavailableError"})


async def retry_lost_replica(
    call: Callable[[], Awaitable[Any]],
    retries: int,
    backoff_s: float = 1.0,
    on_retry: Callable[[], None] = lambda: None,
) -> Any:
    """Await ``call()``, again up to ``retries`` times when its replica died under it.

    Every stage call is idempotent (a piece decoded twice gives the same words), so a call
    lost with its replica is sent again: Serve routes it to another replica, or to the
    restarted one. Bad input and other errors are raised at once; the caller's deadline
    still bounds the whole.
    """
    for attempt in range(retries + 1):
        try:
            return await call()
        except Exception as error:
            if attempt == retries or not _is_lost_replica(error):
                raise
            on_retry()
            await asyncio.sleep(backoff_s * (attempt + 1))
    raise AssertionError("unreachable")
