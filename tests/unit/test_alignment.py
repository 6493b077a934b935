"""Words to speakers: most overlap wins, backchannels keep their speaker, nearest turn
otherwise, segments split at changes."""

from __future__ import annotations

import numpy as np

from speakerscribe.alignment import (
    assign_speakers,
    attribute_speakers,
    letter_label,
    merge_channels,
    speaker_for_span,
    trim_to_sound,
    widen_to_turns,
)
from speakerscribe.loudness import SOUND_FRAME_S
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
        ("A", " hi there.", 0.0, 2.0),  # widened to the turns
        ("B", " hello", 1.8, 4.0),  # over A only where the diarizer heard both
        ("A", " again", 6.0, 8.0),
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


def _segment(words: list[Word], tokens: list[int] | None = None) -> Segment:
    text = "".join(w.word for w in words)
    return Segment(0, 0, words[0].start, words[-1].end, text, tokens=tokens or [], words=words)


def test_overlapped_word_goes_to_most_overlap_when_neither_turn_is_a_backchannel():
    turns = [SpeakerTurn(0.0, 5.0, "spk_a"), SpeakerTurn(4.0, 9.0, "spk_b")]
    assert speaker_for_span(3.8, 4.6, turns) == "spk_a"  # both cover ≥ 50 %: 0.8 vs 0.6 s
    assert speaker_for_span(4.5, 5.1, turns) == "spk_b"  # 0.5 vs 0.6 s
    # a short turn that is not much shorter than the other is no backchannel
    close = [SpeakerTurn(0.0, 2.0, "spk_a"), SpeakerTurn(1.0, 2.2, "spk_b")]
    assert speaker_for_span(1.0, 1.6, close) == "spk_a"  # 2.0 s < 3 × 1.2 s: tie → first


def test_backchannel_keeps_its_speaker_and_becomes_its_own_segment():
    turns = [SpeakerTurn(0.0, 10.0, "spk_a"), SpeakerTurn(4.0, 4.5, "spk_b")]
    words = [
        Word(" so", 3.0, 3.3),
        Word(" then", 3.4, 3.9),
        Word(" yeah", 4.05, 4.4),  # covered wholly by both: B's 0.5 s turn wins
        Word(" we", 4.45, 4.8),  # B covers only 0.05 of 0.35 s: stays A
        Word(" left.", 4.9, 5.4),
    ]
    result = attribute_speakers([_segment(words, tokens=[7, 8, 9])], turns)
    assert [(s.speaker, s.text, s.start, s.end) for s in result] == [
        ("A", " so then", 2.0, 4.45),  # at most WIDEN_MAX_S before its first word
        ("B", " yeah", 4.0, 4.5),  # its whole turn, over A's (both talk there)
        ("A", " we left.", 4.45, 6.4),
    ]
    assert [[w.word for w in s.words] for s in result] == [
        [" so", " then"],
        [" yeah"],
        [" we", " left."],
    ]
    assert [s.id for s in result] == [0, 1, 2]
    assert all(s.tokens == [] for s in result)


def test_zero_length_backchannel_word_keeps_its_speaker():
    turns = [SpeakerTurn(0.0, 10.0, "spk_a"), SpeakerTurn(4.0, 4.6, "spk_b")]
    assert speaker_for_span(4.3, 4.3, turns) == "spk_b"
    assert speaker_for_span(6.0, 6.0, turns) == "spk_a"


def test_long_overlapping_turn_is_no_backchannel():
    turns = [SpeakerTurn(0.0, 10.0, "spk_a"), SpeakerTurn(4.0, 6.0, "spk_b")]  # 2 s > 1.5 s
    assert speaker_for_span(4.5, 4.9, turns) == "spk_a"  # equal overlap: the first turn


def test_turn_change_inside_a_segment_splits_there():
    turns = [SpeakerTurn(0.0, 2.05, "spk_a"), SpeakerTurn(2.05, 5.0, "spk_b")]
    words = [
        Word(" are", 0.5, 0.8),
        Word(" you", 0.9, 1.2),
        Word(" done?", 1.3, 2.0),
        Word(" Almost", 2.1, 2.6),
        Word(" there.", 2.7, 3.1),
    ]
    segment = _segment(words, tokens=[1, 2, 3])
    segment.logprobs = [(" are", -0.1)]
    result = attribute_speakers([segment], turns)
    assert [(s.speaker, s.text, s.start, s.end) for s in result] == [
        ("A", " are you done?", 0.0, 2.05),
        ("B", " Almost there.", 2.05, 4.1),
    ]
    assert [s.logprobs for s in result] == [[(" are", -0.1)], []]


def test_widening_keeps_words_and_neighbours():
    """Edges reach the speaker's turn; words keep Whisper's times; a segment never grows
    over its own speaker's next one, and over another speaker's only where both talk."""
    turns = [SpeakerTurn(0.0, 3.0, "spk_a"), SpeakerTurn(2.9, 6.0, "spk_b")]
    first = _segment([Word(" one", 0.8, 1.2), Word(" two.", 1.3, 1.6)], tokens=[1])
    second = _segment([Word(" three", 1.8, 2.2), Word(" four.", 2.3, 2.6)], tokens=[2])
    third = _segment([Word(" five.", 3.5, 4.0)], tokens=[3])
    result = attribute_speakers([first, second, third], turns)
    assert [(s.speaker, s.start, s.end) for s in result] == [
        ("A", 0.0, 1.8),
        ("A", 1.8, 3.0),
        ("B", 2.9, 5.0),  # 2.9-3.0: both turns, overlapped speech
    ]
    assert [(w.start, w.end) for s in result for w in s.words][0] == (0.8, 1.2)


def test_overlapped_speech_gives_overlapping_segments():
    """A "yeah" inside a long turn: the long turn's segments still cover the turn around
    it, so the overlapped stretch counts for both speakers."""
    turns = [SpeakerTurn(0.0, 6.0, "spk_a"), SpeakerTurn(2.8, 3.4, "spk_b")]
    words = [Word(" so", 0.2, 0.5), Word(" yeah", 2.9, 3.2), Word(" anyway.", 3.6, 4.0)]
    result = attribute_speakers([_segment(words)], turns)
    assert [(s.speaker, s.text, s.start, s.end) for s in result] == [
        ("A", " so", 0.0, 1.5),
        ("B", " yeah", 2.8, 3.4),
        ("A", " anyway.", 2.6, 5.0),  # grows back over the backchannel: A spoke there too
    ]


def test_no_segment_grows_over_another_speaker_where_the_diarizer_heard_only_them():
    """B's last word sits where only A's turn is (Whisper ran B's segment on); A's next
    segment grows back to its turn, but not over B's words."""
    turns = [SpeakerTurn(0.0, 1.0, "spk_b"), SpeakerTurn(1.5, 5.0, "spk_a")]
    b_segment = _segment([Word(" right", 0.2, 0.8), Word(" so", 1.6, 1.9)])
    a_segment = _segment([Word(" then", 2.5, 3.0)])
    b_segment.speaker, a_segment.speaker = "spk_b", "spk_a"
    widen_to_turns([b_segment, a_segment], turns)
    assert (b_segment.start, b_segment.end) == (0.0, 1.8)  # cut back, " so" keeps 0.2 s
    assert (a_segment.start, a_segment.end) == (1.8, 4.0)  # not 1.5: B's words end at 1.8


def test_a_last_word_stretched_over_silence_is_cut_back_to_the_turn():
    """Whisper ran "like..." from 11.0 s to 12.9 s; the speaker's turn ends at 11.1 s."""
    turns = [SpeakerTurn(6.3, 11.1, "spk_b"), SpeakerTurn(12.8, 18.0, "spk_c")]
    spoken = _segment([Word(" it's", 9.1, 9.5), Word(" like...", 11.0, 12.9)])
    result = attribute_speakers([spoken], turns)
    assert [(s.start, s.end) for s in result] == [(8.1, 11.2)]  # widened 1 s back; cut
    assert [(w.start, w.end) for w in result[0].words] == [(9.1, 9.5), (11.0, 11.2)]


def test_an_edge_just_outside_the_turn_stays():
    """The diarizer misses soft word ends too: an edge 0.5 s past the turn is kept."""
    turns = [SpeakerTurn(0.0, 2.0, "spk_a")]
    result = attribute_speakers([_segment([Word(" fine.", 1.5, 2.5)])], turns)
    assert [(s.start, s.end) for s in result] == [(0.5, 2.5)]


def _sounding(duration_s: float, silent: list[tuple[float, float]]) -> np.ndarray:
    frames = np.ones(round(duration_s / SOUND_FRAME_S), dtype=bool)
    for start, end in silent:
        frames[round(start / SOUND_FRAME_S) : round(end / SOUND_FRAME_S)] = False
    return frames


def test_edges_over_silence_move_to_the_sound_and_words_follow():
    """Whisper ran "here." on over a gap of digital silence (4.0-4.6 s) into the next
    turn; a segment starting early over the same gap starts at the sound instead."""
    ran_on = _segment([Word(" over", 2.0, 2.5), Word(" here.", 3.6, 4.5)])
    early = _segment([Word(" next", 4.4, 5.0)])
    trim_to_sound([ran_on, early], _sounding(6.0, [(4.0, 4.6)]))
    assert (ran_on.start, ran_on.end) == (2.0, 4.0)
    assert [(w.start, w.end) for w in ran_on.words] == [(2.0, 2.5), (3.6, 4.0)]
    assert (early.start, early.end) == (4.6, 5.0)
    assert [(w.start, w.end) for w in early.words] == [(4.6, 5.0)]


def test_segments_over_sound_or_over_nothing_but_silence_stay():
    inside = _segment([Word(" a", 1.0, 1.5), Word(" b", 1.6, 2.0)])
    silent = _segment([Word(" hm", 4.1, 4.4)])
    trim_to_sound([inside, silent], _sounding(6.0, [(0.0, 0.9), (4.0, 4.6)]))
    assert (inside.start, inside.end) == (1.0, 2.0)
    assert (silent.start, silent.end) == (4.1, 4.4)


def test_widening_never_reaches_over_silence():
    """The turn runs on to 5.0 s (as references keep a pause inside a turn), the
    recording is silent from 3.0 s: the widened segment stops where the sound does."""
    turns = [SpeakerTurn(0.0, 5.0, "spk_a")]
    result = attribute_speakers(
        [_segment([Word(" fine.", 1.5, 2.5)])], turns, sounding=_sounding(6.0, [(3.0, 6.0)])
    )
    assert [(s.start, s.end) for s in result] == [(0.5, 3.0)]


def test_gap_word_takes_the_nearer_turn():
    turns = [SpeakerTurn(0.0, 2.0, "spk_a"), SpeakerTurn(4.0, 6.0, "spk_b")]
    assert speaker_for_span(2.2, 2.6, turns) == "spk_a"  # 0.4 s after A, 1.6 s before B
    assert speaker_for_span(3.4, 3.8, turns) == "spk_b"
    words = [Word(" um", 2.2, 2.6), Word(" right", 3.4, 3.8)]
    result = attribute_speakers([_segment(words)], turns)
    assert [(s.speaker, s.text) for s in result] == [("A", " um"), ("B", " right")]


def test_gap_far_from_every_turn_still_finds_the_nearest():
    turns = [SpeakerTurn(0.0, 1.0, "spk_a"), SpeakerTurn(100.0, 101.0, "spk_b")]
    words = [Word(" a", 30.0, 30.2), Word(" b", 80.0, 80.2)]
    result = attribute_speakers([_segment(words)], turns)
    assert [s.speaker for s in result] == ["A", "B"]


def test_assignment_looks_only_at_nearby_turns(monkeypatch):
    from speakerscribe import alignment

    # 5k short turns alternating B/C, all inside one long turn of A (the case a window sized
    # by the longest turn makes quadratic), and 20k words, four per short turn
    turns = [SpeakerTurn(0.0, 10_000.0, "spk_a")]
    turns += [SpeakerTurn(2.0 * i, 2.0 * i + 1.0, f"spk_{'bc'[i % 2]}") for i in range(5_000)]
    segments = []
    for i in range(5_000):
        base = 2.0 * i
        words = [Word(" w", base + 0.25 * k, base + 0.25 * k + 0.2) for k in range(4)]
        words[0] = Word(" yeah", base + 0.1, base + 0.3)
        segments.append(_segment(words))
    examined = 0
    real_pick = alignment._pick

    def counting_pick(start, end, touching, nearby):
        nonlocal examined
        touching, nearby = list(touching), list(nearby)
        examined += len(touching) + len(nearby)
        return real_pick(start, end, touching, nearby)

    monkeypatch.setattr(alignment, "_pick", counting_pick)
    alignment.assign_speakers(segments, list(reversed(turns)))  # any order in, sorted inside
    n_words = sum(len(s.words) for s in segments)
    assert n_words == 20_000
    assert examined <= 8 * n_words  # a few turns per word, not thousands
    # inside the short turns (1 s ≤ 1.5 s, A's turn ≥ 3× as long) the short speaker wins
    assert segments[0].words[0].speaker == "spk_b"
    assert segments[1].words[0].speaker == "spk_c"
    assert all(w.speaker == "spk_b" for w in segments[10].words)


def test_spans_out_of_order_are_still_assigned():
    turns = [SpeakerTurn(0.0, 2.0, "spk_a"), SpeakerTurn(2.0, 4.0, "spk_b")]
    late = _segment([Word(" later", 3.0, 3.5)])
    early = _segment([Word(" first", 0.5, 1.0)])
    assign_speakers([late, early], turns)
    assert (late.words[0].speaker, early.words[0].speaker) == ("spk_b", "spk_a")
