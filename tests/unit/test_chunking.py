"""Chunking: pieces ≤ 30 s that tile the audio, cut inside pauses, stitched back exactly."""

from __future__ import annotations

import itertools

import numpy as np

from speakerscribe.audio import decode_audio_bytes
from speakerscribe.chunking import Piece, plan_pieces, speech_intervals, split_audio, stitch
from speakerscribe.types import SAMPLE_RATE, Segment, Word

SR = SAMPLE_RATE


def test_pieces_tile_the_audio_and_respect_the_limit():
    speech = [(i * SR, i * SR + int(0.8 * SR)) for i in range(0, 100)]  # 0.8 s words, 0.2 s pauses
    pieces = plan_pieces(100 * SR, speech, max_piece_s=30.0, search_window_s=10.0)
    assert pieces[0].start == 0 and pieces[-1].end == 100 * SR
    assert all(a.end == b.start for a, b in itertools.pairwise(pieces))
    assert all(p.duration_s <= 30.0 for p in pieces)
    for piece in pieces[:-1]:  # every cut falls in a pause, never inside a word
        assert not any(s < piece.end < e for s, e in speech)


def test_prefers_the_longest_pause_in_the_window():
    speech = [(0, 22 * SR), (int(22.5 * SR), 25 * SR), (int(27 * SR), 40 * SR)]
    (first, second) = plan_pieces(40 * SR, speech)
    assert first.end == 26 * SR  # middle of the 2 s pause, not the 0.5 s one
    assert second.end == 40 * SR


def test_hard_cut_only_without_any_pause():
    pieces = plan_pieces(70 * SR, [(0, 70 * SR)])
    assert [p.end for p in pieces] == [30 * SR, 60 * SR, 70 * SR]


def test_silence_pieces_are_marked():
    pieces = plan_pieces(65 * SR, [(40 * SR, 41 * SR)])
    assert [p.has_speech for p in pieces] == [False, True, False]


def test_real_speech_cut_between_words(testdata):
    clips = [
        decode_audio_bytes((testdata / f"speechbrain/spk{s}_snt{n}.wav").read_bytes())
        for s in (1, 2)
        for n in (1, 2, 3)
    ]
    gap = np.zeros(int(0.4 * SR), dtype=np.float32)
    audio = np.concatenate([x for clip in clips * 4 for x in (clip, gap)])
    speech = speech_intervals(audio)
    pieces = split_audio(audio, max_piece_s=12.0, search_window_s=5.0)
    assert len(pieces) >= 3
    for piece in pieces[:-1]:
        assert not any(s + 0.05 * SR < piece.end < e - 0.05 * SR for s, e in speech)
        window = audio[piece.end - 800 : piece.end + 800]
        assert np.sqrt(np.mean(window**2)) < 0.01  # quiet where we cut


def test_a_quiet_recording_is_heard_as_well_as_a_loud_one(testdata):
    """Silero hears next to nothing of an AMI excerpt 40 dB down unless it is raised."""
    audio = decode_audio_bytes((testdata / "pyannote/dev00.wav").read_bytes())

    def heard_s(intervals) -> float:
        return sum(end - start for start, end in intervals) / SR

    native = speech_intervals(audio)
    assert heard_s(speech_intervals(audio * np.float32(0.01))) >= 0.9 * heard_s(native)


def test_stitch_shifts_times_exactly():
    pieces = [Piece(0, 10 * SR), Piece(10 * SR, 25 * SR)]
    results = [
        [Segment(0, 0, 1.0, 2.0, " a", words=[Word(" a", 1.0, 2.0)])],
        [Segment(0, 0, 0.5, 14.9, " b", words=[Word(" b", 0.5, 20.0)])],
    ]
    segments = stitch(pieces, results)
    assert [(s.id, s.start, s.end) for s in segments] == [(0, 1.0, 2.0), (1, 10.5, 24.9)]
    assert segments[1].words[0].start == 10.5
    assert segments[1].words[0].end == 25.0  # clipped to the piece
    assert segments[1].seek == 1000
