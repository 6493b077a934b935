"""Batched decoding equals one-piece decoding, on the bundled tiny.en model (no Ray)."""

from __future__ import annotations

import re

import pytest

from speakerscribe.audio import decode_audio_bytes
from speakerscribe.errors import ModelFailureError
from speakerscribe.types import SAMPLE_RATE, Segment, Word
from speakerscribe.whisper.decoding import BatchTranscriber, joined_chains
from speakerscribe.whisper.loading import load_whisper_model, resolve_compute_type
from speakerscribe.whisper.options import DecodeOptions
from tools.scoring import read_stm_text, word_error_rate


@pytest.fixture(scope="module")
def transcriber() -> BatchTranscriber:
    """Two workers on any machine: a batch is split between them, as on a CPU server."""
    return BatchTranscriber(load_whisper_model("bundled", device="cpu", workers=2))


@pytest.fixture(scope="module")
def pieces(testdata):
    jfk = decode_audio_bytes((testdata / "faster-whisper/jfk.flac").read_bytes())
    sample = decode_audio_bytes((testdata / "pyannote/sample.wav").read_bytes())
    clip = decode_audio_bytes((testdata / "speechbrain/spk1_snt1.wav").read_bytes())
    return [jfk, sample[:480000], clip]


def test_batched_equals_sequential(transcriber, pieces):
    options = DecodeOptions(language="en", beam_size=1, word_timestamps=True)
    alone = [transcriber.transcribe([p], options)[0] for p in pieces]
    together = transcriber.transcribe(pieces, options)
    assert transcriber.workers == 2  # so the three pieces were split between two workers
    for one, batched in zip(alone, together, strict=True):
        assert [s.text for s in one.segments] == [s.text for s in batched.segments]
        words_one = [w for s in one.segments for w in s.words]
        words_batched = [w for s in batched.segments for w in s.words]
        assert len(words_one) == len(words_batched) > 0
        for a, b in zip(words_one, words_batched, strict=True):
            assert abs(a.start - b.start) <= 0.02 and abs(a.end - b.end) <= 0.02


def test_jfk_text_and_word_times(transcriber, pieces, testdata):
    (result,) = transcriber.transcribe([pieces[0]], DecodeOptions(language="en"))
    text = "".join(s.text for s in result.segments)
    assert word_error_rate((testdata / "faster-whisper/jfk.txt").read_text(), text) <= 0.05
    words = [w for s in result.segments for w in s.words]
    assert all(0 <= w.start <= w.end <= 11.0 for w in words)


def test_sample_wav_reads_in_sentences(transcriber, pieces, testdata):
    """sample.wav is one 30 s piece whose speech starts at 6.7 s. Held to Whisper's rule
    of a first timestamp within 1 s, beam search wrote "hello hello hello I didn't know
    you were there I need to design …": lower case, no punctuation."""
    (result,) = transcriber.transcribe([pieces[1]], DecodeOptions(language="en"))
    text = "".join(s.text for s in result.segments).strip()
    assert text.startswith("Hello"), text
    assert text.count(".") + text.count("?") >= 8, text
    assert "I didn't know you were there." in text and "New Jersey" in text, text
    reference = read_stm_text(testdata / "pyannote/sample.stm")
    assert word_error_rate(reference, text) <= 0.2, text
    words = [w for s in result.segments for w in s.words]
    assert words and 6.0 <= words[0].start and all(w.start <= w.end <= 30.0 for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words)
    said = re.findall(r"[\w']+", text.lower())
    assert said[-6:-3] != said[-3:]  # the tail from 29 s did not read "New Jersey now." again


def test_word_starts_never_go_back_across_segments():
    """A tail pass's first word can align before the last word of the pass before it
    (28.5 s then 28.4 s on sample.wav, on some CPUs)."""
    from speakerscribe.types import Segment, Word
    from speakerscribe.whisper.segments import keep_word_order

    def segment(*words: tuple[float, float]) -> Segment:
        return Segment(
            id=0, seek=0, start=words[0][0], end=words[-1][1], text=" x", tokens=[],
            temperature=0.0, avg_logprob=0.0, compression_ratio=1.0, no_speech_prob=0.0,
            words=[Word(word=" x", start=a, end=b, probability=1.0) for a, b in words],
        )  # fmt: skip

    segments = [segment((27.84, 28.2), (28.5, 28.6)), segment((28.4, 28.45), (28.58, 28.7))]
    keep_word_order(segments)
    assert [(w.start, w.end) for s in segments for w in s.words] == [
        (27.84, 28.2), (28.5, 28.6), (28.5, 28.5), (28.58, 28.7)
    ]  # fmt: skip


def test_words_aligned_outside_their_timestamps_are_held_to_them():
    from speakerscribe.whisper.segments import hold_words_to_timestamps

    def item(*words: tuple[str, float, float]) -> dict:
        return {
            "start": words[0][1],
            "end": words[-1][2],
            "words": [{"word": w, "start": a, "end": b, "probability": 1.0} for w, a, b in words],
        }

    lost = item((" He", 19.44, 19.9), (" should", 19.9, 22.4))
    hold_words_to_timestamps(lost, 0.0, 4.48)
    assert (lost["start"], lost["end"]) == (0.0, 4.48)
    times = [t for w in lost["words"] for t in (w["start"], w["end"])]
    assert times == pytest.approx([0.0, 1.12, 1.12, 4.48])  # by length: "He" is 2 of 8
    late_speech = item((" Hello.", 6.7, 7.1))  # the piece's first timestamp is 0.00
    hold_words_to_timestamps(late_speech, 0.0, 7.2)
    assert [(w["start"], w["end"]) for w in late_speech["words"]] == [(6.7, 7.1)]
    just_after = item((" Right.", 5.78, 5.88))  # timestamps on whole seconds, near enough
    hold_words_to_timestamps(just_after, 4.76, 5.76)
    assert [(w["start"], w["end"]) for w in just_after["words"]] == [(5.78, 5.88)]


def test_a_repetition_loop_is_cut_at_its_first_copy():
    """EN2002a_30s: tiny.en read "It opens a menu." once a second to the window's end."""
    from speakerscribe.whisper.segments import cut_repetition_loop

    said = [{"text": " It doesn't do anything.", "end": 7.0}]
    said += [{"text": " It opens a menu.", "end": 8.0 + n} for n in range(18)]
    kept, again_from = cut_repetition_loop(said, 2.4)
    assert [s["text"] for s in kept] == [" It doesn't do anything.", " It opens a menu."]
    assert again_from == 8.0  # the rest of the window is decoded again from there
    twice = [{"text": " Yes.", "end": 1.0}, {"text": " Yes.", "end": 2.0}]
    twice += [{"text": " I see what you mean there.", "end": 4.0}]
    assert cut_repetition_loop(twice, 2.4) == (twice, None)  # compresses as text does


def test_a_meeting_read_in_a_loop_says_it_once(transcriber, testdata):
    audio = decode_audio_bytes((testdata / "diarization/EN2002a_30s.wav").read_bytes())
    (result,) = transcriber.transcribe([audio], DecodeOptions(language="en", word_timestamps=True))
    text = " ".join(s.text for s in result.segments).lower()
    assert text.count("opens a menu") <= 1, text
    assert result.segments[0].words[0].start < 10.0, result.segments[0]


def test_a_piece_whose_first_words_align_late_keeps_them_in_place(transcriber, testdata):
    """libri_9spk from 101.58 s: Whisper reads the first 4.5 s with timestamps 0 to 4.48,
    and alignment alone would put those words at 19.4 s, after the rest of the piece."""
    audio = decode_audio_bytes((testdata / "diarization/libri_9spk.wav").read_bytes())
    piece = audio[int(101.584 * SAMPLE_RATE) : int(123.984 * SAMPLE_RATE)]
    (result,) = transcriber.transcribe([piece], DecodeOptions(language="en", word_timestamps=True))
    first = result.segments[0]
    assert "notice" in first.text and first.end < 6.0, (first.start, first.end, first.text)
    starts = [w.start for s in result.segments for w in s.words]
    assert len(set(starts)) > len(starts) * 0.9  # not pinned after the misaligned words


def test_a_tail_that_reads_the_last_words_again_is_dropped():
    from speakerscribe.types import Segment
    from speakerscribe.whisper.segments import is_reread

    before = [
        Segment(0, 0, 24.1, 27.5, " At least."),
        Segment(1, 0, 27.8, 29.9, " In New Jersey now."),
    ]
    assert is_reread(before, Segment(0, 0, 29.0, 29.9, " New Jersey now."))
    assert is_reread(before, Segment(0, 0, 29.0, 29.9, " new jersey, now"))
    assert not is_reread(before, Segment(0, 0, 30.5, 31.4, " New Jersey now."))  # said again, later
    assert not is_reread(before, Segment(0, 0, 29.0, 29.9, " We couldn't."))


def test_a_tail_that_starts_by_reading_the_last_words_again_loses_them():
    from speakerscribe.types import Segment, Word
    from speakerscribe.whisper.segments import drop_reread_words

    before = [Segment(0, 0, 27.84, 28.5, " So what kind of thing?")]
    words = [Word(" thing?", 28.4, 28.5), Word(" I", 28.5, 28.58), Word(" don't", 28.58, 28.7)]
    tail = Segment(0, 0, 28.4, 28.7, " thing? I don't", tokens=[5, 6], words=words)
    drop_reread_words(before, tail)
    assert (tail.text, tail.start, tail.tokens) == (" I don't", 28.5, [])
    later = [Word(" thing", 29.5, 29.8), Word(" again", 29.8, 30.1)]
    kept = Segment(0, 0, 29.5, 30.1, " thing again", words=later)
    drop_reread_words(before, kept)  # said again over new audio: a real repeat
    assert kept.text == " thing again"


def test_speech_after_a_window_closed_as_silent_is_decoded(transcriber, testdata):
    """paa_example's last piece (27.5 s to the end): Whisper reads the first caller, then
    ends on a lone timestamp though a second caller speaks from 7 s; VAD hears them."""
    audio = decode_audio_bytes((testdata / "diarization/paa_example.wav").read_bytes())
    piece = audio[439296:]
    (result,) = transcriber.transcribe([piece], DecodeOptions(language="en"))
    assert result.segments[-1].end > 12.0, [(s.start, s.end, s.text) for s in result.segments]
    assert "pension" in " ".join(s.text for s in result.segments[1:]).lower()


def test_speech_skipped_before_the_first_segment_is_decoded(transcriber, testdata):
    """libri_6spk's last piece (74.29 s to the end): Whisper opens it at 3.8 s with the
    second sentence; the first (a 3.5 s turn from 0.7 s, "Then said the eunuch…") was
    never written. VAD hears it, so it is decoded on its own, in its place."""
    audio = decode_audio_bytes((testdata / "diarization/libri_6spk.wav").read_bytes())
    piece = audio[int(74.29 * SAMPLE_RATE) :]
    (result,) = transcriber.transcribe([piece], DecodeOptions(language="en", word_timestamps=True))
    first = result.segments[0]
    assert first.start < 1.5 and "said" in first.text.lower(), [
        (s.start, s.end, s.text) for s in result.segments[:3]
    ]
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts) and [s.id for s in result.segments] == list(range(len(starts)))
    assert "notice" in " ".join(s.text for s in result.segments[1:3]).lower()


def _said(start: float, *words: str) -> Segment:
    """A segment of ``words``, 0.3 s each from ``start``."""
    timed = [Word(f" {w}", start + 0.3 * i, start + 0.3 * (i + 1)) for i, w in enumerate(words)]
    return Segment(0, 0, start, timed[-1].end, "".join(w.word for w in timed), words=timed)


def test_the_segment_after_a_skipped_head_does_not_read_it_again():
    later = _said(4.0, "he", "should", "notice")
    head = [_said(0.7, "then", "said", "the", "eunuch"), _said(2.5, "he", "should")]
    main = [_said(2.9, "he", "should", "notice", "it"), later]
    segments = joined_chains([main, head])
    assert [s.text for s in segments] == [
        " then said the eunuch",
        " he should",
        " notice it",  # read again over the head's audio: dropped
        " he should notice",  # said again, later: kept
    ]
    again = [_said(2.5, "he", "should"), later]
    assert [
        s.text for s in joined_chains([again, [_said(0.7, "then"), _said(2.4, "he", "should")]])
    ] == [
        " then",
        " he should",
        " he should notice",
    ]


def test_a_skipped_head_after_a_tail_does_not_read_its_last_words_again():
    main = [_said(10.0, "so", "what", "kind", "of", "thing"), _said(14.0, "later", "on")]
    head = [_said(11.3, "of", "thing", "I", "don't")]
    assert [s.text for s in joined_chains([main, head])] == [
        " so what kind of thing",
        " I don't",
        " later on",
    ]
    whole = [_said(11.2, "of", "thing")]
    assert [s.text for s in joined_chains([main, whole])] == [" so what kind of thing", " later on"]


def test_the_first_timestamp_may_fall_anywhere_in_the_window(transcriber, pieces, monkeypatch):
    """Pieces start in a pause, so the first timestamp is not held to the first second."""
    calls = []
    model = transcriber.model.model

    class Recording:
        def __getattr__(self, name):
            return getattr(model, name)

        def generate(self, *args, **kwargs):
            calls.append(kwargs)
            return model.generate(*args, **kwargs)

    monkeypatch.setattr(transcriber.model, "model", Recording())
    transcriber.transcribe([pieces[2]], DecodeOptions(language="en", beam_size=1))
    assert calls and all(c["max_initial_timestamp_index"] == 1500 for c in calls)  # 30 s


def test_a_failing_piece_fails_alone(transcriber, pieces):
    import numpy as np

    bad = np.zeros((2, 2), dtype=np.float32)  # not a 1-D waveform: the model call raises
    results = transcriber.transcribe([pieces[2], bad], DecodeOptions(language="en", beam_size=1))
    assert not isinstance(results[0], Exception) and results[0].segments
    assert isinstance(results[1], ModelFailureError)


def test_local_model_directory_and_missing_one(tmp_path, testdata):
    """A converted model directory (here a random one) loads with device and compute type
    chosen automatically, and decodes a piece to segments of the right shape."""
    from speakerscribe.errors import ModelNotFoundError
    from tools.random_whisper import build_random_whisper

    directory = build_random_whisper(tmp_path / "random-whisper", size="tiny-test")
    model = load_whisper_model(str(directory), device="auto", compute_type="auto")
    assert model.model.device == "cpu" and model.model.compute_type.startswith("int8")
    assert not model.model.is_multilingual
    audio = decode_audio_bytes((testdata / "faster-whisper/jfk.flac").read_bytes())[
        : 5 * SAMPLE_RATE
    ]
    (result,) = BatchTranscriber(model).transcribe(
        [audio], DecodeOptions(language="en", beam_size=1)
    )
    assert result.segments and all(0 <= s.start <= s.end <= 5.0 for s in result.segments)
    with pytest.raises(ModelNotFoundError):
        load_whisper_model(str(tmp_path / "no-such-model"), device="cpu")


def test_compute_type_follows_the_device():
    assert resolve_compute_type("auto", "cuda") == "float16"
    assert resolve_compute_type("auto", "cpu") == "int8"
    assert resolve_compute_type("int8_float16", "cuda") == "int8_float16"


def test_packed_short_pieces_read_the_same(transcriber, testdata):
    """Packing short pieces into shared windows keeps each piece's own words."""
    names = ["faster-whisper/jfk.flac", "faster-whisper/hotwords.mp3"] + [
        f"speechbrain/spk{s}_snt{n}.wav" for s in (1, 2) for n in (1, 2)
    ]
    clips = [decode_audio_bytes((testdata / n).read_bytes()) for n in names]
    options = DecodeOptions(language="en", beam_size=1, word_timestamps=True)
    alone = transcriber.transcribe(clips, options)
    packer = BatchTranscriber(transcriber.model, pack_short_pieces=True)
    packed = packer.transcribe(clips, options)
    errors = []
    for clip, one, other in zip(clips, alone, packed, strict=True):
        text_one = "".join(s.text for s in one.segments)
        text_other = "".join(s.text for s in other.segments)
        errors.append(word_error_rate(text_one, text_other))
        assert errors[-1] <= 0.25, (text_one, text_other)
        duration = clip.shape[0] / 16000
        assert all(0 <= w.start <= w.end <= duration for s in other.segments for w in s.words)
    assert sum(errors) / len(errors) <= 0.1, errors


def test_call_duration_scales_with_the_pieces_over_the_workers():
    """After an 8-piece call the next batch waits for a 1-piece call, not another 8-piece one."""
    from speakerscribe.whisper.scheduling import CallDuration

    duration = CallDuration(workers=2, smoothing=0.5)
    assert duration.expected(4) == 0.0  # nothing seen yet: the configured wait applies
    duration.observe(8, 4.0)  # 4 rounds of 2 pieces side by side: 1 s a round
    assert duration.expected(1) == duration.expected(2) == 1.0
    assert duration.expected(8) == 4.0
    duration.observe(1, 2.0)  # a slower round moves the average halfway
    assert duration.expected(3) == 3.0
