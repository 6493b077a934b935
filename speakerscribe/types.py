"""Small value types shared by every stage (plain dataclasses, cheap to pickle)."""

from __future__ import annotations

from dataclasses import dataclass, field

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
