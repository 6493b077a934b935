"""The random tiny-test Whisper model: built offline, loads in faster-whisper, decodes fast."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from speakerscribe.audio import decode_audio_bytes
from speakerscribe.bundled_models import whisper_tiny_en_path
from tools.random_whisper import SIZES, build_random_whisper

faster_whisper = pytest.importorskip("faster_whisper")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_random_whisper(tmp_path_factory.mktemp("random") / "tiny-test", "tiny-test")


@pytest.fixture(scope="module")
def three_seconds(testdata):
    return decode_audio_bytes((testdata / "faster-whisper/jfk.flac").read_bytes())[:48000]


def _transcribe(model, audio) -> str:
    segments, _ = model.transcribe(audio, language="en", beam_size=5)
    return "".join(segment.text for segment in segments)


def test_builds_a_ctranslate2_model_with_tiny_en_tokenizer(model_dir):
    for name in ("model.bin", "config.json", "tokenizer.json"):
        assert (model_dir / name).is_file(), name
    tokenizer = (model_dir / "tokenizer.json").read_bytes()
    assert tokenizer == (whisper_tiny_en_path() / "tokenizer.json").read_bytes()
    assert json.loads((model_dir / "preprocessor_config.json").read_text())["feature_size"] == 80


def test_loads_and_transcribes_fast_with_other_words_than_tiny_en(model_dir, three_seconds):
    started = time.monotonic()
    model = faster_whisper.WhisperModel(str(model_dir), device="cpu", compute_type="int8")
    random_text = _transcribe(model, three_seconds)
    elapsed = time.monotonic() - started
    assert elapsed < 5.0, f"load + transcribe took {elapsed:.1f} s"
    assert not model.model.is_multilingual  # same 51864-token vocabulary as tiny.en
    assert random_text.strip()

    reference = faster_whisper.WhisperModel(
        str(whisper_tiny_en_path()), device="cpu", compute_type="int8"
    )
    tiny_en_text = _transcribe(reference, three_seconds)
    assert "fellow americans" in tiny_en_text.lower()
    assert random_text != tiny_en_text


def test_decoder_ends_text_at_its_fixed_position(model_dir, three_seconds):
    """Greedy, beam and sampled decoding all stop at eot_position: bounded without options."""
    model = faster_whisper.WhisperModel(str(model_dir), device="cpu", compute_type="int8")
    window = np.pad(three_seconds, (0, 30 * 16000 - len(three_seconds)))
    encoded = model.encode(model.feature_extractor(window)[:, :3000])
    sot = model.hf_tokenizer.token_to_id("<|startoftranscript|>")
    for beam_size, temperature in [(1, 0.0), (5, 0.0), (1, 1.0)]:
        (result,) = model.model.generate(
            encoded,
            [[sot]],
            beam_size=beam_size,
            sampling_temperature=temperature,
            sampling_topk=0 if temperature else 1,
            max_length=448,
        )
        assert 1 + len(result.sequences_ids[0]) == SIZES["tiny-test"].eot_position + 1


def test_second_build_is_skipped_and_a_different_one_refused(model_dir):
    marker = (model_dir / "random_whisper.json").read_text()
    started = time.monotonic()
    assert build_random_whisper(model_dir, "tiny-test") == model_dir
    assert time.monotonic() - started < 0.5
    assert (model_dir / "random_whisper.json").read_text() == marker
    with pytest.raises(FileExistsError):
        build_random_whisper(model_dir, "tiny-test", seed=1)
    with pytest.raises(ValueError):
        build_random_whisper(model_dir.parent / "other", "huge")
