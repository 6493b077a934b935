"""The transcription endpoint's logic, free of Ray: decode, separate, chunk, fan out, merge.

``TranscriptionService`` talks to the model stages through the small ``Stages``
protocol. The ingress deployment implements it with DeploymentHandles; unit tests
implement it with fakes. Blocking work (decoding, VAD) runs in a thread so the
event loop keeps serving other requests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from speakerscribe.alignment import attribute_speakers, merge_channels
from speakerscribe.audio import decode_audio_bytes, decode_audio_channels, duration_s
from speakerscribe.chunking import Piece, split_audio, stitch
from speakerscribe.errors import (
    InvalidRequestError,
    ModelNotFoundError,
    OverloadedError,
    StageTimeoutError,
)
from speakerscribe.formats import TranscriptionResult
from speakerscribe.protocol import WHISPER_1, TranscriptionRequest
from speakerscribe.settings import Settings
from speakerscribe.transcription import DecodeOptions
from speakerscribe.types import SAMPLE_RATE, Segment, SpeakerTurn


class Stages(Protocol):
    """The model stages as the ingress sees them (each may live on another node)."""

    async def separate(self, audio: np.ndarray) -> np.ndarray: ...

    async def detect_language(self, audio: np.ndarray, model: str) -> str: ...

    async def transcribe(self, piece: np.ndarray, options: DecodeOptions) -> list[Segment]: ...

    async def diarize(
        self,
        audio: np.ndarray,
        num_speakers: int | None,
        min_speakers: int | None,
        max_speakers: int | None,
    ) -> list[SpeakerTurn]: ...


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

    @property
    def runs_diarizer(self) -> bool:
        return self.diarize and not self.request.multichannel


class TranscriptionService:
    """``POST /v1/audio/transcriptions`` without the HTTP: bytes + request → result."""

    def __init__(self, settings: Settings, stages: Stages):
        self.settings = settings
        self.stages = stages

    def resolve_model(self, requested: str | None) -> str:
        """The request's ``model`` → a served model id (``whisper-1`` is the default's alias)."""
        if requested in (None, "", WHISPER_1):
            return self.settings.model_id
        if requested in self.settings.served_models:
            return requested
        available = ", ".join(repr(m) for m in self.settings.served_models)
        raise ModelNotFoundError(
            f"model {requested!r} is not served here; available: {available} (alias {WHISPER_1!r})",
            param="model",
        )

    def check_speaker_limits(self, request: TranscriptionRequest) -> None:
        limit = self.settings.max_speakers_limit
        for name in ("num_speakers", "min_speakers", "max_speakers"):
            value = getattr(request, name)
            if value is not None and value > limit:
                raise InvalidRequestError(
                    f"{name} must be at most {limit} (the server's max_speakers_limit)", param=name
                )

    async def prepare(
        self, data: bytes, request: TranscriptionRequest, task: str = "transcribe"
    ) -> "PreparedAudio":
        """Everything that can fail on bad input: validate, decode, separate, chunk.

        Streaming answers call this before sending headers, so bad input still gets a 4xx.
        """
        model = self.resolve_model(request.model)
        self.check_speaker_limits(request)
        clock = StageClock()
        limit = self.settings.max_audio_duration_s
        with clock.measure("decode"):
            if request.multichannel:
                tracks = await asyncio.to_thread(decode_audio_channels, data, max_duration_s=limit)
            else:
                tracks = [await asyncio.to_thread(decode_audio_bytes, data, max_duration_s=limit)]
        if request.enable_vocal_separation:
            with clock.measure("separation"):
                tracks = list(
                    await self._within(
                        "separation",
                        asyncio.gather(*[self.stages.separate(t) for t in tracks]),
                        tracks[0].shape[0],
                    )
                )
        diarize = request.wants_diarization(self.settings.enable_speaker_diarization)
        with clock.measure("chunking"):
            plans = [
                [p for p in await asyncio.to_thread(self._plan, track) if p.has_speech]
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
        )
        return PreparedAudio(request, tracks, plans, options, diarize, clock)

    async def transcribe(
        self, data: bytes, request: TranscriptionRequest, task: str = "transcribe"
    ) -> TranscriptionResult:
        """Decode once; per track (the mix, or each channel): separate, chunk, transcribe.

        The diarizer runs on the whole mix concurrently with transcription; with
        ``multichannel`` each channel is its own speaker and no diarizer is needed.
        """
        prepared = await self.prepare(data, request, task)
        if prepared.runs_diarizer:
            track_segments, turns = await asyncio.gather(
                self._transcribe_tracks(prepared), self._diarize(prepared)
            )
        else:
            track_segments, turns = await self._transcribe_tracks(prepared), []
        return self._finish(prepared, track_segments, turns)

    async def stream_events(self, prepared: "PreparedAudio") -> AsyncIterator[dict]:
        """OpenAI's transcription stream: text deltas in audio order as pieces finish,
        then (with diarization) one ``transcript.text.segment`` per segment, then done.
        """
        if prepared.request.multichannel:  # channels interleave: answer once they are all in
            result = self._finish(prepared, await self._transcribe_tracks(prepared), [])
            deltas = [s.text for s in result.segments]
        else:
            track, pieces = prepared.tracks[0], prepared.plans[0]
            tasks = [
                asyncio.ensure_future(self.stages.transcribe(track[p.start : p.end], prepared.options))
                for p in pieces
            ]
            diarization = (
                asyncio.ensure_future(self._diarize(prepared)) if prepared.runs_diarizer else None
            )
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
                        yield {"type": "transcript.text.delta", "delta": delta}
                turns = await diarization if diarization else []
            finally:
                for pending in [*tasks, *([diarization] if diarization else [])]:
                    pending.cancel()
            result = self._finish(prepared, [stitch(pieces, results)], turns)
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

    async def _transcribe_tracks(self, prepared: "PreparedAudio") -> list[list[Segment]]:
        """Every track's pieces to the Transcriber at once, under one deadline."""
        with prepared.clock.measure("transcription"):
            return list(
                await self._within(
                    "transcription",
                    asyncio.gather(
                        *[
                            self._transcribe_track(t, plan, prepared.options)
                            for t, plan in zip(prepared.tracks, prepared.plans)
                        ]
                    ),
                    prepared.tracks[0].shape[0],
                )
            )

    async def _diarize(self, prepared: "PreparedAudio") -> list[SpeakerTurn]:
        request = prepared.request
        with prepared.clock.measure("diarization"):
            return await self._within(
                "diarization",
                self.stages.diarize(
                    prepared.tracks[0], request.num_speakers, request.min_speakers, request.max_speakers
                ),
                prepared.tracks[0].shape[0],
            )

    def _finish(
        self, prepared: "PreparedAudio", track_segments: list[list[Segment]], turns: list[SpeakerTurn]
    ) -> TranscriptionResult:
        multichannel = prepared.request.multichannel
        with prepared.clock.measure("merge"):
            if multichannel:
                segments = merge_channels(track_segments)
            elif prepared.runs_diarizer:
                segments = attribute_speakers(track_segments[0], turns)
            else:
                segments = track_segments[0]
        return TranscriptionResult(
            duration=duration_s(prepared.tracks[0]),
            language=prepared.options.language or "en",
            segments=segments,
            task=prepared.options.task,
            diarized=prepared.diarize or multichannel,
            stage_seconds=prepared.clock.seconds,
        )

    def _plan(self, audio: np.ndarray) -> list[Piece]:
        return split_audio(
            audio, max_piece_s=self.settings.max_piece_s, search_window_s=self.settings.cut_search_window_s
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
        for track, plan in zip(tracks, plans):
            if plan:
                detection = self.stages.detect_language(track[plan[0].start :], model)
                return await self._within("language detection", detection, 0)
        return "en"

    async def _transcribe_track(
        self, audio: np.ndarray, pieces: list[Piece], options: DecodeOptions
    ) -> list[Segment]:
        """All pieces of one track go to the Transcriber at once, so they can share batches."""
        results = await asyncio.gather(
            *[self.stages.transcribe(audio[p.start : p.end], options) for p in pieces]
        )
        return stitch(pieces, list(results))

    def _budget(self, num_samples: int) -> float:
        """A stage's deadline grows with the audio: long files are slow, not stuck."""
        seconds = num_samples / SAMPLE_RATE
        return self.settings.stage_timeout_s + self.settings.stage_timeout_per_audio_s * seconds

    async def _within(self, stage: str, awaitable, num_samples: int, budget: float | None = None):
        """Await a stage under its deadline (504), and turn a lost replica into a 503."""
        budget = self._budget(num_samples) if budget is None else budget
        try:
            return await asyncio.wait_for(awaitable, timeout=max(budget, 0.001))
        except asyncio.TimeoutError:
            raise StageTimeoutError(f"{stage} took longer than its {budget:.0f} s deadline") from None
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
