"""Words to speakers: most overlap wins, nearest turn otherwise, segments split at changes."""

from __future__ import annotations

from speakerscribe.alignment import (
    attribute_speakers,
    letter_label,
    merge_channels,
    speaker_for_span,
)
from speakerscribe.types import Segment, SpeakerTurn, Word

TURNS = [
    SpeakerTurn(0.0, 2.0, "spk_x"),
    SpeakerTurn(1.8, 4.0, "spk_y"),
    SpeakerTurn(6.0, 8.0, "spk_x"),
]


def test_most_overlap_wins():
    assert speaker_for_span(1.5, 2.1, TURNS) == "spk_x"  # 0.5 s vs 0.3 s
    assert speaker_for_span(1.9, 3.0, TURNS) == "spk_y"


def test_nearest_turn_when_no_overlap():
    assert speaker_for_span(4.5, 4.8, TURNS) == "spk_y"
    assert speaker_for_span(5.6, 5.9, TURNS) == "spk_x"
    assert speaker_for_span(1.0, 2.0, []) is None


def test_segments_split_where_speaker_changes_and_labels_by_first_appearance():
    words = [
        Word(" hi", 0.2, 0.5),
        Word(" there.", 0.6, 1.0),
        Word(" hello", 2.5, 3.0),
        Word(" again", 6.5, 7.0),
    ]
    segments = [Segment(0, 0, 0.2, 7.0, " hi there. hello again", tokens=[1, 2], words=words)]
    result = attribute_speakers(segments, TURNS)
    assert [(s.speaker, s.text, s.start, s.end) for s in result] == [
        ("A", " hi there.", 0.2, 1.0),
        ("B", " hello", 2.5, 3.0),
        ("A", " again", 6.5, 7.0),
    ]
    assert [s.id for s in result] == [0, 1, 2]
    assert all(w.speaker in ("A", "B") for s in result for w in s.words)


def test_wordless_segment_gets_a_speaker():
    result = attribute_speakers([Segment(0, 0, 6.1, 7.9, " later")], TURNS)
    assert result[0].speaker == "A"


def test_letter_labels():
    assert [letter_label(i) for i in (0, 1, 25, 26, 27)] == ["A", "B", "Z", "AA", "AB"]


def test_merge_channels_interleaves():
    left = [Segment(0, 0, 0.0, 1.0, " l1"), Segment(1, 0, 3.0, 4.0, " l2")]
    right = [Segment(0, 0, 1.5, 2.5, " r1")]
    merged = merge_channels([left, right])
    assert [(s.text, s.speaker, s.id) for s in merged] == [
        (" l1", "A", 0),
        (" r1", "B", 1),
        (" l2", "A", 2),
    ]
