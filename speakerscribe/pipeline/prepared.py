"""A request between preparation and fan-out: its tracks and piece plans, decoding
options, the diarizer already running, and the clock of its stages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from speakerscribe.chunking import Piece
from speakerscribe.pipeline.stages import PieceCache, Progress, no_progress
from speakerscribe.protocol import TranscriptionRequest
from speakerscribe.types import Diarization, DiarizationOptions
from speakerscribe.whisper.options import DecodeOptions


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
    progress: Progress = no_progress
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
