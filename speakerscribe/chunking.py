"""Cut long audio at pauses into pieces Whisper can take (≤ 30 s), and stitch them back.

Speech/pause boundaries come from Silero VAD (shipped inside faster-whisper). A piece
ends at the middle of the longest pause found in the last ``search_window_s`` before
the 30 s limit, so no cut falls inside a word when such a pause exists; only a
stretch of unbroken speech longer than the window is cut hard at the limit.
Pieces tile the audio exactly (each starts where the previous ended), so stitching
is adding the piece's start time.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from faster_whisper.vad import VadOptions, get_speech_timestamps

from speakerscribe.loudness import raising_gain
from speakerscribe.types import SAMPLE_RATE, Segment

# Short pauses count: we look for gaps between words, not for end of utterance.
PAUSE_VAD = VadOptions(threshold=0.5, min_silence_duration_ms=100, speech_pad_ms=30)


@dataclass(frozen=True, slots=True)
class Piece:
    """A slice ``[start, end)`` of the audio, in samples; ``has_speech`` false ones are skipped."""

    start: int
    end: int
    has_speech: bool = True

    @property
    def offset_s(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def duration_s(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE


VAD_BLOCK_S = 300.0


def speech_intervals(
    audio: np.ndarray,
    vad: VadOptions = PAUSE_VAD,
    block_s: float = VAD_BLOCK_S,
    *,
    level_of: np.ndarray | None = None,
) -> list[tuple[int, int]]:
    """Speech regions ``(start, end)`` in samples, from Silero VAD.

    VAD runs on blocks of ``block_s``: faster-whisper's VAD holds about two extra copies
    of its input, which for a 4-hour file would be gigabytes. A region that crosses a
    block boundary is joined back together. Silero misses much of a recording far
    quieter than ``loudness.MIN_SPEECH_LEVEL_DB``, so it is raised to that first; its level
    is that of ``level_of`` (the whole recording, where ``audio`` is a part) or ``audio``.
    """
    gain = raising_gain(audio if level_of is None else level_of)
    block = int(block_s * SAMPLE_RATE)
    intervals: list[tuple[int, int]] = []
    for offset in range(0, audio.shape[0], block):
        heard = audio[offset : offset + block]
        if gain != 1.0:
            heard = heard * np.float32(gain)
        for found in get_speech_timestamps(heard, vad):
            start, end = found["start"] + offset, found["end"] + offset
            if intervals and start - intervals[-1][1] <= 1 and start % block <= 1:
                intervals[-1] = (intervals[-1][0], end)
            else:
                intervals.append((start, end))
    return intervals


def plan_pieces(
    num_samples: int,
    speech: list[tuple[int, int]],
    *,
    max_piece_s: float = 30.0,
    search_window_s: float = 10.0,
    min_speech_s: float = 0.1,
) -> list[Piece]:
    """Tile ``[0, num_samples)`` with pieces of at most ``max_piece_s``, cutting inside pauses."""
    max_len = int(max_piece_s * SAMPLE_RATE)
    window = int(search_window_s * SAMPLE_RATE)
    pauses = _pauses(num_samples, speech)
    cuts = []
    position = 0
    while num_samples - position > max_len:
        limit = position + max_len
        low = max(position + 1, limit - window)
        best: tuple[int, int] | None = None
        for start, end in pauses:
            clipped = (max(start, low), min(end, limit))
            if clipped[1] <= clipped[0]:
                continue
            if best is None or clipped[1] - clipped[0] >= best[1] - best[0]:
                best = clipped
        position = (best[0] + best[1]) // 2 if best else limit
        cuts.append(position)
    bounds = [0, *cuts, num_samples]
    min_speech = int(min_speech_s * SAMPLE_RATE)
    return [
        Piece(start, end, _speech_within(speech, start, end) >= min_speech)
        for start, end in itertools.pairwise(bounds)
        if end > start
    ]


def split_audio(
    audio: np.ndarray, *, max_piece_s: float = 30.0, search_window_s: float = 10.0
) -> list[Piece]:
    """VAD, then ``plan_pieces``: the one call the ingress makes."""
    return plan_pieces(
        audio.shape[0],
        speech_intervals(audio),
        max_piece_s=max_piece_s,
        search_window_s=search_window_s,
    )


def split_utterances(
    audio: np.ndarray,
    *,
    threshold: float = 0.5,
    prefix_padding_ms: int = 300,
    silence_duration_ms: int = 200,
    max_piece_s: float = 30.0,
) -> list[Piece]:
    """OpenAI's ``server_vad`` chunking: one piece per utterance, silence left out.

    An utterance ends after ``silence_duration_ms`` below ``threshold`` and keeps
    ``prefix_padding_ms`` of audio around it; Silero splits utterances longer than a
    piece at their longest inner pause (or hard, at the limit). Unlike ``split_audio``
    the pieces do not tile the audio: what falls between utterances is never decoded.
    """
    vad = VadOptions(
        threshold=threshold,
        min_silence_duration_ms=silence_duration_ms,
        speech_pad_ms=prefix_padding_ms,
        max_speech_duration_s=max_piece_s,
    )
    longest = int(max_piece_s * SAMPLE_RATE)
    pieces = []
    for start, end in speech_intervals(audio, vad):
        # padding can push an utterance Silero capped at the limit just past it
        for cut in range(start, end, longest):
            pieces.append(Piece(cut, min(cut + longest, end)))
    return pieces


def stitch(pieces: list[Piece], results: list[list[Segment]]) -> list[Segment]:
    """Piece-relative segments → absolute times, renumbered in audio order."""
    stitched: list[Segment] = []
    for piece, segments in zip(pieces, results, strict=True):
        offset = piece.offset_s
        end_limit = piece.end / SAMPLE_RATE
        seek = int(round(offset * 100))  # Whisper's seek counts 10 ms mel frames
        for segment in segments:
            segment.start = _shift(segment.start, offset, end_limit)
            segment.end = _shift(segment.end, offset, end_limit)
            segment.seek = seek
            for word in segment.words:
                word.start = _shift(word.start, offset, end_limit)
                word.end = _shift(word.end, offset, end_limit)
            segment.id = len(stitched)
            stitched.append(segment)
    return stitched


def _shift(t: float, offset: float, end_limit: float) -> float:
    return round(min(t + offset, end_limit), 3)


def _pauses(num_samples: int, speech: list[tuple[int, int]]) -> list[tuple[int, int]]:
    pauses, previous_end = [], 0
    for start, end in sorted(speech):
        if start > previous_end:
            pauses.append((previous_end, start))
        previous_end = max(previous_end, end)
    if previous_end < num_samples:
        pauses.append((previous_end, num_samples))
    return pauses


def _speech_within(speech: list[tuple[int, int]], start: int, end: int) -> int:
    return sum(max(0, min(e, end) - max(s, start)) for s, e in speech)
