"""Vocal separation: the soft mask really helps Whisper under music; demucs loads from a local repo.

No Ray. The Whisper check uses real recordings (jfk.flac, music_with_vocals.mp3) and the
bundled tiny.en model, because "suppresses music" only matters if speech reads better.
The demucs checks use a tiny randomly initialised HTDemucs saved in the exact on-disk
format ``demucs.pretrained.get_model(name, repo=...)`` reads, since no real weights are
reachable offline.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from speakerscribe.separation import (
    SAMPLE_RATE,
    DemucsSeparator,
    SoftMaskSeparator,
    _blockwise,
    load_separator,
)
from tools.scoring import normalize_text

SOURCES = ["drums", "bass", "other", "vocals"]


@pytest.fixture(scope="module")
def data_dir(testdata) -> Path:
    return testdata


@pytest.fixture(scope="module")
def jfk(data_dir: Path) -> np.ndarray:
    from faster_whisper import decode_audio

    return decode_audio(str(data_dir / "faster-whisper" / "jfk.flac"))


@pytest.fixture(scope="module")
def music(data_dir: Path) -> np.ndarray:
    from faster_whisper import decode_audio

    return decode_audio(str(data_dir / "demucs" / "music_with_vocals.mp3"))


def mix_under_music(
    speech: np.ndarray, music: np.ndarray, snr_db: float, offset_s: float = 0.0
) -> np.ndarray:
    """Speech plus music (looped/trimmed to the speech, from ``offset_s``) at ``snr_db``."""
    bed = np.resize(np.roll(music, -int(offset_s * SAMPLE_RATE)), speech.shape)
    gain = np.sqrt(np.mean(speech**2) / (np.mean(bed**2) * 10 ** (snr_db / 10)))
    mixture = speech + gain * bed
    return (mixture / max(1.0, float(np.max(np.abs(mixture))))).astype(np.float32)


def sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    reference = reference.astype(np.float64)
    error = reference - estimate.astype(np.float64)
    return float(10 * np.log10(np.sum(reference**2) / np.sum(error**2)))


# --- soft mask: Whisper reads speech under music better after separation ---------------


@pytest.fixture(scope="module")
def whisper():
    from faster_whisper import WhisperModel

    from speakerscribe.bundled_models import BundledModelMissing, whisper_tiny_en_path

    try:
        path = whisper_tiny_en_path()
    except BundledModelMissing as exc:
        pytest.skip(str(exc))
    return WhisperModel(str(path), device="cpu", compute_type="int8")


def transcribe(model, audio: np.ndarray) -> str:
    """Greedy, deterministic decoding (no temperature fallback, no VAD, no prompt carry-over)."""
    segments, _ = model.transcribe(
        audio,
        language="en",
        beam_size=1,
        best_of=1,
        temperature=0.0,
        vad_filter=False,
        condition_on_previous_text=False,
    )
    return " ".join(segment.text for segment in segments)


# Music start offsets: the song changes over its 20 s, so one offset alone would be an anecdote.
MUSIC_OFFSETS_S = (0.0, 6.0, 12.0)


@pytest.mark.parametrize("snr_db", [-5.0, -6.0, -8.0])
def test_soft_mask_lowers_whisper_wer_under_music(whisper, jfk, music, data_dir, snr_db):
    """Speech under louder music: the separated audio must read strictly better.

    At these SNRs tiny.en loses a third to most of the words of the mixture. Measured
    (offsets 0/6/12 s): -5 dB WER 0.48 mixed vs 0.12 separated, -6 dB 0.58 vs 0.18,
    -8 dB 0.82 vs 0.62.
    """
    import jiwer

    reference = normalize_text((data_dir / "faster-whisper" / "jfk.txt").read_text())
    separator = SoftMaskSeparator()
    mixed_texts, separated_texts, sdr_gains = [], [], []
    for offset in MUSIC_OFFSETS_S:
        mixture = mix_under_music(jfk, music, snr_db, offset)
        separated = separator(mixture)
        assert separated.shape == mixture.shape and separated.dtype == np.float32
        mixed_texts.append(normalize_text(transcribe(whisper, mixture)) or "<empty>")
        separated_texts.append(normalize_text(transcribe(whisper, separated)) or "<empty>")
        sdr_gains.append(sdr_db(jfk, separated) - sdr_db(jfk, mixture))

    references = [reference] * len(MUSIC_OFFSETS_S)
    wer_mixed = jiwer.wer(references, mixed_texts)
    wer_separated = jiwer.wer(references, separated_texts)
    report = (
        f"SNR {snr_db} dB: WER mixed {wer_mixed:.3f}, separated {wer_separated:.3f}; "
        f"SDR gains {np.round(sdr_gains, 1)}\nmixed: {mixed_texts}\nseparated: {separated_texts}"
    )
    print(report)
    assert wer_mixed >= 0.3, "the mixture is too easy to tell anything:\n" + report
    assert wer_separated < wer_mixed, report
    # Energy-wise too: the speech estimate is closer to the clean speech than the mixture.
    assert min(sdr_gains) > 2.0, report


def test_soft_mask_suppresses_music_more_than_speech(jfk, music):
    """Music alone loses much more energy than clean speech does (measured ~10 dB vs ~3 dB)."""
    separator = SoftMaskSeparator()

    def kept_db(audio: np.ndarray) -> float:
        out = separator(audio).astype(np.float64)
        return float(10 * np.log10(np.sum(out**2) / np.sum(audio.astype(np.float64) ** 2)))

    music_kept, speech_kept = kept_db(music), kept_db(jfk)
    assert music_kept < -6.0, (music_kept, speech_kept)
    assert speech_kept - music_kept > 4.0, (music_kept, speech_kept)


# --- soft mask: shapes and edge cases ----------------------------------------------------


@pytest.mark.parametrize("seconds", [0.1, 1.0, 60.0])
def test_soft_mask_shape_dtype_finite(jfk, music, seconds):
    """Short clips (under one 256 ms window, or too short for the neighbour search) and a
    minute-long one all come back float32, finite, with exactly the input's length."""
    n = int(seconds * SAMPLE_RATE) + 7  # an odd length, to catch off-by-hop errors
    audio = np.resize(mix_under_music(jfk, music, -3.0), n)
    out = SoftMaskSeparator()(audio)
    assert out.shape == (n,) and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    if seconds < 0.2:
        np.testing.assert_array_equal(out, audio)  # too short to judge: handed back as is


@pytest.mark.parametrize("n", [0, 1, 1600, 5 * SAMPLE_RATE])
def test_soft_mask_silence_is_silence(n):
    out = SoftMaskSeparator()(np.zeros(n, dtype=np.float32))
    assert out.shape == (n,) and out.dtype == np.float32
    assert not np.any(out)


def test_soft_mask_accepts_other_dtypes_and_non_finite_samples():
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(3 * SAMPLE_RATE)).astype(np.float64)
    audio[100] = np.nan
    audio[200] = np.inf
    out = SoftMaskSeparator()(audio)
    assert out.dtype == np.float32 and out.shape == audio.shape and np.all(np.isfinite(out))
    with pytest.raises(ValueError, match="1-D"):
        SoftMaskSeparator()(np.zeros((2, 1600), dtype=np.float32))


def test_soft_mask_blocks_match_in_the_cross_fade(jfk, music):
    """Long audio goes through in blocks; the seams must not click or drop samples."""
    audio = np.resize(mix_under_music(jfk, music, -3.0), 25 * SAMPLE_RATE + 3)
    blocked = SoftMaskSeparator(block_s=8.0, overlap_s=1.0)(audio)
    whole = SoftMaskSeparator(block_s=60.0)(audio)
    assert blocked.shape == audio.shape and np.all(np.isfinite(blocked))
    # Different context per block changes the mask a little, not the signal's level.
    assert abs(10 * np.log10(np.sum(blocked**2) / np.sum(whole**2))) < 1.5


def test_blockwise_cross_fade_is_exact_for_identity():
    audio = np.random.default_rng(1).standard_normal(10_007).astype(np.float32)
    for block, overlap in [(1000, 100), (3000, 999), (10_007, 10), (20_000, 100)]:
        out = _blockwise(audio, lambda x: x.copy(), block, overlap)
        np.testing.assert_allclose(out, audio, atol=1e-6)


# --- demucs: loading a local checkpoint repository ---------------------------------------


def make_tiny_htdemucs(seed: int = 0, segment: float = 1.0):
    """A randomly initialised HTDemucs small enough to run on a CPU in well under a second."""
    import torch
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(seed)
    model = HTDemucs(
        sources=SOURCES,
        samplerate=44100,
        audio_channels=2,
        channels=8,
        depth=4,
        t_layers=1,
        t_heads=4,
        segment=segment,
    )
    return model.eval()


def save_demucs_repo(
    root: Path, model=None, *, signature: str = "0badcafe", name: str | None = "tiny_htdemucs"
) -> Path:
    """Write ``model`` into ``root`` as a demucs local repository and return ``root``.

    Same layout as demucs' own remote files: ``<signature>-<sha256[:8]>.th`` holding the
    ``{"klass", "args", "kwargs", "state"}`` package of ``states.serialize_model`` (half
    precision state, as published checkpoints are), written by ``states.save_with_checksum``
    so ``LocalRepo`` verifies the checksum on load; and, when ``name`` is given, a bag
    ``<name>.yaml`` listing that signature, the way ``htdemucs.yaml`` lists its model.
    """
    from demucs.states import save_with_checksum, serialize_model
    from omegaconf import OmegaConf

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    model = make_tiny_htdemucs() if model is None else model
    package = serialize_model(model, OmegaConf.create({}), half=True)
    save_with_checksum(package, root / f"{signature}.th")
    if name is not None:
        (root / f"{name}.yaml").write_text(f"models: ['{signature}']\n")
    return root


@pytest.fixture(scope="module")
def demucs_repo(tmp_path_factory) -> Path:
    return save_demucs_repo(tmp_path_factory.mktemp("demucs-repo"))


def test_saved_repo_has_demucs_layout(demucs_repo):
    files = sorted(p.name for p in demucs_repo.iterdir())
    assert "tiny_htdemucs.yaml" in files, files
    assert any(re.fullmatch(r"0badcafe-[0-9a-f]{8}\.th", f) for f in files), files


def test_load_separator_demucs_bag_from_local_repo(demucs_repo, jfk):
    from demucs.apply import BagOfModels

    separator = load_separator("tiny_htdemucs", repo=str(demucs_repo), device="cpu")
    assert isinstance(separator, DemucsSeparator)
    assert isinstance(separator.model, BagOfModels)
    audio = jfk[: SAMPLE_RATE + 123]
    out = separator(audio)
    assert out.shape == audio.shape and out.dtype == np.float32
    assert np.all(np.isfinite(out)) and np.any(out)


def test_demucs_by_signature_blocks_and_edge_cases(demucs_repo, jfk):
    from demucs.htdemucs import HTDemucs

    separator = DemucsSeparator.from_pretrained("0badcafe", repo=demucs_repo)
    assert isinstance(separator.model, HTDemucs)
    assert separator(np.zeros(0, dtype=np.float32)).shape == (0,)
    silent = separator(np.zeros(SAMPLE_RATE // 2, dtype=np.float32))
    assert silent.shape == (SAMPLE_RATE // 2,) and not np.any(silent)
    # Short input (shorter than the model's segment) and the block path for long input.
    blocked = DemucsSeparator(separator.model, block_s=1.0, block_overlap_s=0.25)
    for n in (333, 2 * SAMPLE_RATE + 5):
        out = blocked(jfk[:n])
        assert out.shape == (n,) and out.dtype == np.float32 and np.all(np.isfinite(out))


def test_demucs_repo_errors(demucs_repo, tmp_path):
    with pytest.raises(FileNotFoundError):
        load_separator("tiny_htdemucs", repo=tmp_path / "missing")
    from demucs.repo import ModelLoadingError

    with pytest.raises(ModelLoadingError):
        load_separator("no_such_model", repo=demucs_repo)
    with pytest.raises(ValueError, match="longer than"):
        DemucsSeparator(make_tiny_htdemucs(segment=1.0), segment=5.0)


@pytest.mark.parametrize("name", [None, "soft-mask"])
def test_load_separator_soft_mask(name):
    assert isinstance(load_separator(name), SoftMaskSeparator)
