"""Packing short pieces into shared 30 s Whisper windows.

Whisper's encoder always sees 30 s: a 5 s piece pays for 25 s of padding. On a CPU the
encoder dominates and grows linearly with the batch, so batching alone saves little
there. Packing puts several short pieces (with a second of silence between them) into
one window, decodes it once, and hands each piece back the words whose middle falls
inside its own span. The Transcriber packs only pieces with equal decoding options.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from speakerscribe.types import SAMPLE_RATE, Segment, Word

WINDOW_S = 30.0
GAP_S = 1.0


@dataclass(frozen=True, slots=True)
class Slot:
    """Where piece ``index`` sits inside a packed window, in samples."""

    index: int
    start: int
    end: int


def plan_windows(
    lengths: list[int], window_s: float = WINDOW_S, gap_s: float = GAP_S
) -> list[list[Slot]]:
    """First-fit decreasing: group piece lengths (samples) into windows of at most ``window_s``."""
    capacity = int(window_s * SAMPLE_RATE)
    gap = int(gap_s * SAMPLE_RATE)
    windows: list[list[Slot]] = []
    used: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        length = lengths[index]
        for w, filled in enumerate(used):
            if filled + gap + length <= capacity:
                start = filled + gap
                windows[w].append(Slot(index, start, start + length))
                used[w] = start + length
                break
        else:
            windows.append([Slot(index, 0, length)])
            used.append(length)
    for window in windows:
        window.sort(key=lambda slot: slot.start)
    return windows


def assemble(pieces: list[np.ndarray], window: list[Slot]) -> np.ndarray:
    """The window's audio: pieces at their slots, silence between."""
    audio = np.zeros(window[-1].end, dtype=np.float32)
    for slot in window:
        audio[slot.start : slot.end] = pieces[slot.index]
    return audio


def unpack(window: list[Slot], segments: list[Segment]) -> dict[int, list[Segment]]:
    """Window segments → per-piece segments, times relative to each piece.

    A word belongs to the slot that holds its middle (or the nearest slot, for a word
    Whisper placed in a gap); segments are rebuilt from each slot's words.
    """
    by_piece: dict[int, list[Segment]] = {slot.index: [] for slot in window}
    for segment in segments:
        runs: dict[int, list[Word]] = {}
        for word in segment.words:
            slot = _slot_of((word.start + word.end) / 2, window)
            runs.setdefault(slot.index, []).append(word)
        for index, words in runs.items():
            slot = next(s for s in window if s.index == index)
            offset = slot.start / SAMPLE_RATE
            limit = (slot.end - slot.start) / SAMPLE_RATE
            shifted = [
                Word(
                    word=w.word,
                    start=_clip(w.start - offset, limit),
                    end=_clip(w.end - offset, limit),
                    probability=w.probability,
                )
                for w in words
            ]
            text = "".join(w.word for w in shifted)
            by_piece[index].append(
                Segment(
                    id=len(by_piece[index]),
                    seek=0,
                    start=shifted[0].start,
                    end=shifted[-1].end,
                    text=text if text.startswith(" ") else " " + text,
                    tokens=[],
                    temperature=segment.temperature,
                    avg_logprob=segment.avg_logprob,
                    compression_ratio=segment.compression_ratio,
                    no_speech_prob=segment.no_speech_prob,
                    words=shifted,
                )
            )
    return by_piece


def _slot_of(t: float, window: list[Slot]) -> Slot:
    sample = t * SAMPLE_RATE
    return min(
        window,
        key=lambda s: (
            0 if s.start <= sample <= s.end else min(abs(s.start - sample), abs(s.end - sample))
        ),
    )


def _clip(t: float, limit: float) -> float:
    return round(min(max(t, 0.0), limit), 3)
