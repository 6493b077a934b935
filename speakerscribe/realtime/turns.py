"""What a live session holds between events: its tuning, the open turn, utterances.

Plain records and one pure function (``sentence_segments``), kept out of the session
classes so those read as behaviour.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace

import numpy as np

from speakerscribe.realtime.speakers import (
    DEFAULT_KNOWN_SPEAKER_THRESHOLD,
    DEFAULT_SPEAKER_THRESHOLD,
)
from speakerscribe.realtime.stream import VAD_WINDOW, LocalAgreement
from speakerscribe.types import SAMPLE_RATE, Segment

SENTENCE_ENDS = (".", "?", "!", "。", "？", "！")
TURN_PAUSE_S = 0.3


@dataclass(frozen=True)
class SessionTuning:
    """How a live session decodes, cuts turns and labels speakers; the defaults serve.

    Apart from the session's wiring (model callables, client config), so a caller sets
    the few values it cares about by name and the rest keep one source.
    """

    beam_size: int = 5
    """Beam of the final decode."""
    partial_beam_size: int = 1
    """Beam of the partial decodes, redone every ``partial_interval_s``."""
    speaker_threshold: float = DEFAULT_SPEAKER_THRESHOLD
    max_speakers: int = 20
    known_speaker_threshold: float = DEFAULT_KNOWN_SPEAKER_THRESHOLD
    """``SpeakerTracker``'s join threshold, identity cap and enrolled-voice threshold."""
    max_known_speakers: int = 4
    """Enrolled voices one ``session.update`` may name."""
    min_speaker_segment_s: float = 1.0
    """Shorter pieces are not embedded: they take a neighbour's speaker."""
    max_utterance_s: float = 25.0
    """An utterance is cut before it grows past this, inside Whisper's 30 s window..."""
    cut_search_s: float = 10.0
    """... at the longest pause within this much of its end."""
    long_turn_s: float = 6.0
    long_turn_silence_ms: int = 250
    """A turn longer than ``long_turn_s`` ends at this shorter pause: its final comes while
    the talk goes on, and the one after the last word is for a few seconds of audio, not
    for a 25 s monologue (or a quick back-and-forth with no long pause)."""
    turn_pause_s: float = TURN_PAUSE_S
    """A pause between words this long cuts a sentence into speaker pieces."""
    partial_interval_s: float = 1.0
    """New speech between partial decodes."""
    min_speech_ms: int = 100
    """Speech this long starts an utterance (server VAD)."""
    max_pending_finals: int = 4
    """Final decodes in flight before the session stops taking audio (back-pressure)."""
    speculate_after_ms: int = 160
    speculate_lead_ms: int = 2_000
    """A pause of ``speculate_after_ms`` starts the final decode, but not earlier than
    ``speculate_lead_ms`` before the commit is due: a long ``silence_duration_ms`` would
    otherwise pay a wasted decode for every short pause."""
    speculate_below_partial_s: float = 3.0
    """... and only while partials come back this quickly: a busy Transcriber computes a
    dropped speculation anyway (a started batch cannot be cancelled), and under that load
    the wait it would hide is small beside the queue."""


@dataclass
class _Utterance:
    item_id: str
    start_window: int
    audio: np.ndarray
    diarize: bool

    @property
    def start_s(self) -> float:
        return self.start_window * VAD_WINDOW / SAMPLE_RATE

    @property
    def duration_s(self) -> float:
        return self.audio.shape[0] / SAMPLE_RATE


@dataclass
class _Decoded:
    """A final decode: Whisper's segments, the speaker-homogeneous pieces, their voices."""

    segments: list[Segment]
    pieces: list[Segment]
    embeddings: list[np.ndarray | None] | None


@dataclass
class _Speculation:
    """A final decode started early in a pause, on the audio so far.

    Server VAD commits only after ``silence_duration_ms`` of pause; decoding during that
    wait takes it off the latency a user feels. If speech resumes, the task is dropped.
    """

    pause_start: int  # the window where the pause began
    end: int  # the decoded audio ends here, a little into the pause
    diarize: bool
    task: asyncio.Task


@dataclass
class _Turn:
    """Where the open utterance stands in the window stream."""

    item_id: str
    start: int | None = None  # first window of the open utterance (prefix included)
    candidate: int | None = None  # VAD crossed the threshold here, not yet long enough
    silence_since: int | None = None
    heard_speech: bool = False
    next_partial: int = 0
    agreement: LocalAgreement = field(default_factory=LocalAgreement)
    speculation: _Speculation | None = None

    def drop_speculation(self) -> None:
        if self.speculation is not None:
            self.speculation.task.cancel()
            self.speculation = None


def sentence_segments(segments: list[Segment], turn_pause_s: float = TURN_PAUSE_S) -> list[Segment]:
    """Whisper segments cut after each sentence, and at pauses between words.

    Speakers mostly take turns between sentences, while one Whisper segment often spans
    several turns; a sentence is the unit that gets one speaker. Whisper's punctuation
    varies with the audio around it ("Diane in New Jersey, and I'm Sheila"), so a pause
    of ``turn_pause_s`` inside a sentence, where a turn can change too, also cuts.
    """
    pieces: list[Segment] = []
    for segment in segments:
        if not segment.words:
            pieces.append(segment)
            continue
        sentence = []
        for index, word in enumerate(segment.words):
            sentence.append(word)
            last = index == len(segment.words) - 1
            if (
                last
                or word.word.rstrip().endswith(SENTENCE_ENDS)
                or segment.words[index + 1].start - word.end >= turn_pause_s
            ):
                pieces.append(
                    replace(
                        segment,
                        id=len(pieces),
                        start=sentence[0].start,
                        end=max(sentence[-1].end, sentence[0].start),
                        text="".join(w.word for w in sentence),
                        tokens=[],
                        words=sentence,
                    )
                )
                sentence = []
    return pieces
