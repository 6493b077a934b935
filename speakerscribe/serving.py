"""The transcription endpoint's logic, free of Ray: decode, separate, chunk, fan out, merge.

``TranscriptionService`` talks to the model stages through the small ``Stages``
protocol. The ingress deployment implements it with DeploymentHandles; unit tests
implement it with fakes. Blocking work (decoding, VAD) runs in a thread so the
event loop keeps serving other requests.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import contextmanager
from typing import Protocol

import numpy as np

from speakerscribe.alignment import attribute_speakers, merge_channels
from speakerscribe.audio import decode_audio_bytes, decode_audio_channels, duration_s
from speakerscribe.chunking import Piece, split_audio, stitch
from speakerscribe.errors import InvalidRequestError, ModelNotFoundError
from speakerscribe.formats import TranscriptionResult
from speakerscribe.protocol import WHISPER_1, TranscriptionRequest
from speakerscribe.settings import Settings
from speakerscribe.transcription import DecodeOptions
from speakerscribe.types import Segment, SpeakerTurn


class Stages(Protocol):
    """The model stages as the ingress sees them (each may live on another node)."""

    async def separate(self, audio: np.ndarray) -> np.ndarray: ...

    async def detect_language(self, audio: np.ndarray) -> str: ...

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


class TranscriptionService:
    """``POST /v1/audio/transcriptions`` without the HTTP: bytes + request → result."""

    def __init__(self, settings: Settings, stages: Stages, multilingual: bool = False):
        self.settings = settings
        self.stages = stages
        self.multilingual = multilingual

    def resolve_model(self, requested: str | None) -> str:
        served = self.settings.model_id
        if requested in (None, WHISPER_1, served):
            return served
        raise ModelNotFoundError(
            f"model {requested!r} is not served here; available: {served!r} (alias {WHISPER_1!r})",
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

    async def transcribe(
        self, data: bytes, request: TranscriptionRequest, task: str = "transcribe"
    ) -> TranscriptionResult:
        """Decode once; per track (the mix, or each channel): separate, chunk, transcribe.

        The diarizer runs on the whole mix concurrently with transcription; with
        ``multichannel`` each channel is its own speaker and no diarizer is needed.
        """
        self.resolve_model(request.model)
        self.check_speaker_limits(request)
        clock = StageClock()
        with clock.measure("decode"):
            if request.multichannel:
                tracks = await asyncio.to_thread(
                    decode_audio_channels, data, max_duration_s=self.settings.max_audio_duration_s
                )
            else:
                tracks = [
                    await asyncio.to_thread(
                        decode_audio_bytes, data, max_duration_s=self.settings.max_audio_duration_s
                    )
                ]
        del data
        if request.enable_vocal_separation:
            with clock.measure("separation"):
                tracks = list(await asyncio.gather(*[self.stages.separate(t) for t in tracks]))
        diarize = request.wants_diarization(self.settings.enable_speaker_diarization)
        with clock.measure("chunking"):
            plans = [
                [p for p in await asyncio.to_thread(self._plan, track) if p.has_speech]
                for track in tracks
            ]
        options = DecodeOptions(
            language=await self._language(request, tracks, plans),
            task=task,  # type: ignore[arg-type]
            prompt=request.prompt,
            temperature=request.temperature,
            word_timestamps=diarize or request.wants_words(),
            beam_size=self.settings.beam_size,
        )
        transcription = self._timed(
            clock,
            "transcription",
            asyncio.gather(
                *[self._transcribe_track(t, plan, options) for t, plan in zip(tracks, plans)]
            ),
        )
        turns: list[SpeakerTurn] = []
        if diarize and not request.multichannel:
            diarization = self._timed(
                clock,
                "diarization",
                self.stages.diarize(
                    tracks[0], request.num_speakers, request.min_speakers, request.max_speakers
                ),
            )
            track_segments, turns = await asyncio.gather(transcription, diarization)
        else:
            track_segments = await transcription
        with clock.measure("merge"):
            if request.multichannel:
                segments = merge_channels(track_segments)
            elif diarize:
                segments = attribute_speakers(track_segments[0], turns)
            else:
                segments = track_segments[0]
        return TranscriptionResult(
            duration=duration_s(tracks[0]),
            language=options.language or "en",
            segments=segments,
            task=task,
            diarized=diarize or request.multichannel,
            stage_seconds=clock.seconds,
        )

    def _plan(self, audio: np.ndarray) -> list[Piece]:
        return split_audio(
            audio, max_piece_s=self.settings.max_piece_s, search_window_s=self.settings.cut_search_window_s
        )

    async def _language(
        self, request: TranscriptionRequest, tracks: list[np.ndarray], plans: list[list[Piece]]
    ) -> str:
        """The request's language, else detected on the first speech (multilingual models)."""
        if request.language or not self.multilingual:
            return request.language or "en"
        for track, plan in zip(tracks, plans):
            if plan:
                return await self.stages.detect_language(track[plan[0].start :])
        return "en"

    async def _transcribe_track(
        self, audio: np.ndarray, pieces: list[Piece], options: DecodeOptions
    ) -> list[Segment]:
        """All pieces of one track go to the Transcriber at once, so they can share batches."""
        results = await asyncio.gather(
            *[self.stages.transcribe(audio[p.start : p.end], options) for p in pieces]
        )
        return stitch(pieces, list(results))

    @staticmethod
    async def _timed(clock: StageClock, stage: str, awaitable):
        with clock.measure(stage):
            return await awaitable
