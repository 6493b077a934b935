"""What the pipeline needs from the model stages and from its caller, as protocols: the
ingress implements ``Stages`` with DeploymentHandles, unit tests with fakes; jobs pass a
``Progress`` and a ``PieceCache``. Also the retry of a call whose replica died."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import numpy as np

from speakerscribe.chunking import Piece
from speakerscribe.types import Diarization, DiarizationOptions, Segment
from speakerscribe.whisper.options import DecodeOptions


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


def no_progress(stage: str, fraction: float) -> None:
    pass


def is_lost_replica(error: BaseException) -> bool:
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
            if attempt == retries or not is_lost_replica(error):
                raise
            on_retry()
            await asyncio.sleep(backoff_s * (attempt + 1))
    raise AssertionError("unreachable")
