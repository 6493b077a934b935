"""Packing plan and unpacking of words back to their pieces."""

from __future__ import annotations

import itertools

import numpy as np

from speakerscribe.types import SAMPLE_RATE, Segment, Word
from speakerscribe.whisper.packing import Slot, assemble, plan_windows, unpack

SR = SAMPLE_RATE


def test_windows_hold_at_most_30_s_with_gaps():
    lengths = [s * SR for s in (12, 3, 28, 10, 5, 2)]
    windows = plan_windows(lengths)
    assert sorted(slot.index for w in windows for slot in w) == list(range(6))
    for window in windows:
        assert window[-1].end <= 30 * SR
        assert all(b.start - a.end >= SR for a, b in itertools.pairwise(window))
        assert all(s.end - s.start == lengths[s.index] for s in window)
    assert len(windows) == 3  # 28 | 12+10+5 | 3+2 (first fit decreasing)


def test_assemble_and_unpack_words_by_middle():
    pieces = [np.ones(2 * SR, np.float32), np.full(3 * SR, 2, np.float32)]
    window = [Slot(0, 0, 2 * SR), Slot(1, 3 * SR, 6 * SR)]
    audio = assemble(pieces, window)
    assert audio.shape == (6 * SR,) and audio[int(2.5 * SR)] == 0 and audio[4 * SR] == 2
    segment = Segment(
        0,
        0,
        0.0,
        5.9,
        " a b c",
        words=[Word(" a", 0.1, 0.9), Word(" b", 2.2, 3.4), Word(" c", 3.5, 5.9)],
    )
    by_piece = unpack(window, [segment])
    assert [s.text for s in by_piece[0]] == [" a"]
    assert [(w.word, w.start, w.end) for s in by_piece[1] for w in s.words] == [
        (" b", 0.0, 0.4),
        (" c", 0.5, 2.9),
    ]
