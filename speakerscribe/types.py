"""Small value types shared by every stage (plain dataclasses, cheap to pickle)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SAMPLE_RATE = 16_000
"""Every stage works on 16 kHz mono float32 audio."""


@dataclass(frozen=True, slots=True)
class SpeakerTurn:
    """One stretch of speech by one speaker, in seconds from the start of the audio."""

    start: float
    end: float
    speaker: str


@dataclass(slots=True)
class Word:
    """One recognised word with absolute times; ``speaker`` is filled by alignment."""

    word: str
    start: float
    end: float
    probability: float = 1.0
    speaker: str | None = None
    overlap: bool = False
    """Said while another speaker talks (set by ``diarization.overlap.flag_overlaps``)."""


@dataclass(slots=True)
class Segment:
    """One recognised segment with absolute times, shaped like faster-whisper's."""

    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int] = field(default_factory=list)
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0
    words: list[Word] = field(default_factory=list)
    speaker: str | None = None
    logprobs: list[tuple[str, float]] | None = None
    """(token text, log probability) of each text token, when the request asked for them."""
    overlap: bool = False
    """Any of its words (or, without words, the segment) is in overlapped speech."""


@dataclass(slots=True)
class DiarizationOptions:
    """What a request asks of the diarizer beyond "who speaks when"."""

    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    known_speakers: dict[str, np.ndarray] = field(default_factory=dict)
    """Enrolled name → reference clip (16 kHz mono): matching speakers take the name."""
    detect_overlap: bool = False


@dataclass(slots=True)
class Diarization:
    """The diarizer's answer: turns (identified speakers already named), overlapped speech."""

    turns: list[SpeakerTurn]
    overlaps: list[tuple[float, float]] = field(default_factory=list)
    identified: dict[str, float] = field(default_factory=dict)
    """Enrolled name → cosine similarity of the speaker that took it."""
