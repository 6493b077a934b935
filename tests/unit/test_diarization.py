"""Speaker diarization on real recordings, scored like the literature (DER, collar 0, overlap in).

No Ray. The embedded diarizer runs on pyannote's own test audio (a 2-speaker phone call and
two AMI meeting excerpts) against their references, so "works" means "diarizes real speech
about as well as when it was tuned". The loader tests build a real pyannote
``SpeakerDiarization`` pipeline directory offline: the embedded segmentation checkpoint
and resemblyzer saved as a pyannote embedding checkpoint, referenced as ``$model/...``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from pyannote.core import Annotation, Segment, Timeline
from pyannote.database.util import load_rttm, load_uem
from pyannote.metrics.diarization import DiarizationErrorRate

from speakerscribe.diarization import (
    Diarizer,
    EmbeddedDiarizer,
    EmbeddedModelMissing,
    PyannotePipelineDiarizer,
    ResemblyzerEmbedding,
    load_diarizer,
)
from speakerscribe.embedded import segmentation_checkpoint_path
from speakerscribe.scoring import to_annotation
from speakerscribe.types import SAMPLE_RATE, SpeakerTurn


@pytest.fixture(scope="module")
def pyannote_data(testdata) -> Path:
    return testdata / "pyannote"


@pytest.fixture(scope="module")
def checkpoint() -> Path:
    path = segmentation_checkpoint_path()
    if not path.is_file():
        pytest.fail(f"segmentation checkpoint missing at {path}; run `make models`")
    return path


@pytest.fixture(scope="module")
def diarizer(checkpoint) -> EmbeddedDiarizer:
    return load_diarizer("embedded")


def load_wav(path: Path) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    assert rate == SAMPLE_RATE
    return audio.mean(axis=1)


def der(reference: Annotation, turns: list[SpeakerTurn], uem: Timeline) -> float:
    metric = DiarizationErrorRate(collar=0.0, skip_overlap=False)
    return metric(reference, to_annotation(turns, reference.uri), uem=uem)


def assert_turn_shape(turns: list[SpeakerTurn], duration: float) -> None:
    assert isinstance(turns, list) and turns
    for turn in turns:
        assert isinstance(turn, SpeakerTurn)
        assert isinstance(turn.speaker, str) and turn.speaker
        assert 0.0 <= turn.start < turn.end <= duration + 1e-3
    assert [t.start for t in turns] == sorted(t.start for t in turns)


def test_sample_two_speakers(diarizer, pyannote_data):
    audio = load_wav(pyannote_data / "sample.wav")
    turns = diarizer(audio)
    assert isinstance(diarizer, Diarizer)
    assert_turn_shape(turns, len(audio) / SAMPLE_RATE)
    assert len({t.speaker for t in turns}) == 2
    reference = load_rttm(pyannote_data / "sample.rttm")["sample"]
    whole = Timeline([Segment(0.0, len(audio) / SAMPLE_RATE)], uri="sample")
    assert der(reference, turns, whole) <= 0.15


def test_ami_dev_mean_der(diarizer, pyannote_data):
    references = load_rttm(pyannote_data / "debug.development.rttm")
    uems = load_uem(pyannote_data / "debug.development.uem")
    scores = {}
    for uri in ("dev00", "dev01"):  # rttm/uem uris are the wav stems
        turns = diarizer(load_wav(pyannote_data / f"{uri}.wav"))
        scores[uri] = der(references[uri], turns, uems[uri])
    assert np.mean(list(scores.values())) <= 0.30, scores


def test_num_speakers_one(diarizer, pyannote_data):
    turns = diarizer(load_wav(pyannote_data / "sample.wav"), num_speakers=1)
    assert turns and len({t.speaker for t in turns}) == 1


def test_silence_gives_no_turns(diarizer):
    assert diarizer(np.zeros(5 * SAMPLE_RATE, dtype=np.float32)) == []
    assert diarizer(np.zeros(0, dtype=np.float32)) == []


def test_rejects_bad_speaker_bounds(diarizer):
    with pytest.raises(ValueError):
        diarizer(np.zeros(SAMPLE_RATE, dtype=np.float32), min_speakers=3, max_speakers=2)


def test_missing_checkpoint_says_make_models(tmp_path):
    with pytest.raises(EmbeddedModelMissing, match="make models"):
        load_diarizer("embedded", cache_dir=tmp_path)
    with pytest.raises(EmbeddedModelMissing, match="make models"):
        EmbeddedDiarizer(tmp_path / "nothing.bin")


def write_pipeline_dir(directory: Path, checkpoint: Path) -> Path:
    """A pyannote ``SpeakerDiarization`` pipeline directory that needs no hub at all.

    ``$model/<subdir>`` entries resolve relative to the directory. The PLDA is an
    identity placeholder: ``SpeakerDiarization.__init__`` always loads one, but only
    VBx clustering uses it and this config clusters agglomeratively.
    """
    (directory / "segmentation").mkdir(parents=True)
    shutil.copy(checkpoint, directory / "segmentation" / "pytorch_model.bin")
    ResemblyzerEmbedding.from_resemblyzer().save_pretrained(directory / "embedding")
    dim = ResemblyzerEmbedding.HIDDEN
    (directory / "plda").mkdir()
    np.savez(
        directory / "plda" / "xvec_transform.npz",
        mean1=np.zeros(dim),
        mean2=np.zeros(dim),
        lda=np.eye(dim),
    )
    np.savez(directory / "plda" / "plda.npz", mu=np.zeros(dim), tr=np.eye(dim), psi=np.ones(dim))
    config = {
        "pipeline": {
            "name": "pyannote.audio.pipelines.SpeakerDiarization",
            "params": {
                "segmentation": "$model/segmentation",
                "embedding": "$model/embedding",
                "plda": "$model/plda",
                "clustering": "AgglomerativeClustering",
                "embedding_exclude_overlap": True,
                "segmentation_batch_size": 32,
                "embedding_batch_size": 32,
            },
        },
        "params": {
            "segmentation": {"threshold": 0.5, "min_duration_off": 0.0},
            "clustering": {"method": "average", "min_cluster_size": 5, "threshold": 0.2},
        },
    }
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    return directory


def test_local_pipeline_directory(tmp_path, checkpoint, pyannote_data, monkeypatch):
    directory = write_pipeline_dir(tmp_path / "pipeline", checkpoint)
    monkeypatch.chdir(tmp_path)  # relative paths must resolve against the directory, not cwd
    diarizer = load_diarizer(str(directory))
    assert isinstance(diarizer, PyannotePipelineDiarizer)
    assert isinstance(diarizer, Diarizer)
    audio = load_wav(pyannote_data / "sample.wav")
    turns = diarizer(audio)
    assert_turn_shape(turns, len(audio) / SAMPLE_RATE)
    assert 1 <= len({t.speaker for t in turns}) <= 3
    assert len({t.speaker for t in diarizer(audio, num_speakers=1)}) == 1


def test_missing_local_pipeline_fails_fast(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_diarizer(str(tmp_path / "no-such-pipeline"))


def test_short_clip_turns_stay_inside_audio(diarizer, pyannote_data):
    """pyannote pads the last chunk; turns must still end by the end of the audio."""
    clip = load_wav(pyannote_data / "sample.wav")[8 * SAMPLE_RATE : 9 * SAMPLE_RATE]
    assert_turn_shape(diarizer(clip), 1.0)


def test_clip_embeddings_tell_speakers_apart(diarizer, testdata):
    """Live streams match speakers by these: same voice closer than another voice."""

    def embed(name: str) -> np.ndarray:
        from speakerscribe.audio import decode_audio_bytes

        vector = diarizer.embed(
            decode_audio_bytes((testdata / f"speechbrain/{name}.wav").read_bytes())
        )
        return vector / np.linalg.norm(vector)

    spk1, spk1_again, spk2 = embed("spk1_snt1"), embed("spk1_snt2"), embed("spk2_snt1")
    assert spk1.ndim == 1 and np.all(np.isfinite(spk1))
    assert spk1 @ spk1_again > spk1 @ spk2
