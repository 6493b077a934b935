"""What a piece is decoded with, and what comes back: shared by the ingress, the
Transcriber and the realtime session, so it imports no model code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from speakerscribe.types import Segment

Task = Literal["transcribe", "translate"]


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    """What a piece is decoded with. Hashable: one model call only mixes equal options.

    ``model`` is the served model id (the request's ``model``, resolved); pieces for
    different models never share a call.
    """

    model: str = ""
    language: str | None = None
    task: Task = "transcribe"
    prompt: str | None = None
    temperature: float = 0.0
    word_timestamps: bool = True
    beam_size: int = 5
    logprobs: bool = False


@dataclass(slots=True)
class PieceTranscript:
    """Segments of one piece, times relative to the piece's start."""

    segments: list[Segment]
    language: str
