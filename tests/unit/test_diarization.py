"""Speaker diarization on real recordings, scored like the literature (DER, overlap in).

No Ray. The bundled diarizer runs on the shared test audio (a 2-speaker phone call, AMI
meeting excerpts, 3- to 9-speaker conversations, single speakers) against their references.
The loader tests build local pipeline directories offline, checkpoints referenced as
``$model/...``, as a user's own pipeline would be.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from pyannote.audio import Pipeline
from pyannote.core import Annotation, Segment, Timeline
from pyannote.database.util import load_rttm, load_uem
from pyannote.metrics.diarization import DiarizationErrorRate

from speakerscribe.bundled_models import (
    CAMPPLUS_ARCHITECTURE,
    CAMPPLUS_WEIGHTS,
    DEFAULT_MODEL_CACHE,
    SEGMENTATION,
    segmentation_checkpoint_path,
)
from speakerscribe.diarization.bundled import (
    DEFAULT_PARAMETERS,
    PIPELINE_CLASS,
    PIPELINE_CONFIG,
    BundledDiarization,
    speech_windows,
    write_pipeline_config,
)
from speakerscribe.diarization.clustering import linkage_labels, spectral_labels, tidy_clusters
from speakerscribe.diarization.diarizer import (
    BundledModelMissing,
    Diarizer,
    PyannotePipelineDiarizer,
    annotation_to_turns,
    bundled_pipeline_directory,
    load_diarizer,
)
from speakerscribe.diarization.short_turns import reassign_short_pieces, turn_changes
from speakerscribe.diarization.sub_batches import SubBatches
from speakerscribe.loudness import MIN_SPEECH_LEVEL_DB, speech_level_db
from speakerscribe.settings import load_settings
from speakerscribe.types import SAMPLE_RATE, SpeakerTurn
from tools.known_speakers import load_clips, run_trials
from tools.scoring import to_annotation


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
def diarizer(checkpoint) -> PyannotePipelineDiarizer:
    return load_diarizer("bundled")


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
    assert der(reference, turns, whole) <= 0.08


def test_a_reply_that_follows_at_once_keeps_its_own_speaker(diarizer, pyannote_data):
    """Sheila's second "Hello." (7.55-8.35 s) runs straight into Diane (8.32 s on); the
    1.5 s windows there hear mostly Diane, the short-turn pass hears Sheila."""
    turns = diarizer(load_wav(pyannote_data / "sample.wav"))

    def speaker_at(start: float, end: float) -> str:
        return max(turns, key=lambda t: min(end, t.end) - max(start, t.start)).speaker

    sheila, diane = speaker_at(10.0, 10.5), speaker_at(11.3, 12.0)
    assert sheila != diane
    assert speaker_at(7.7, 8.2) == sheila
    assert speaker_at(8.6, 9.8) == diane


def test_ami_dev_mean_der(diarizer, pyannote_data):
    references = load_rttm(pyannote_data / "debug.development.rttm")
    uems = load_uem(pyannote_data / "debug.development.uem")
    scores = {}
    for uri in ("dev00", "dev01"):  # rttm/uem uris are the wav stems
        turns = diarizer(load_wav(pyannote_data / f"{uri}.wav"))
        scores[uri] = der(references[uri], turns, uems[uri])
    assert np.mean(list(scores.values())) <= 0.20, scores


@pytest.mark.parametrize(
    ("name", "speakers"),
    [
        ("falcon_test", 3),
        ("paa_example", 4),
        ("libri_6spk", 6),
        ("libri_9spk", 9),
        ("EN2002a_30s", 4),  # 12 of its 29 s of speech overlapped
    ],
)
def test_speaker_count_without_hints(diarizer, testdata, name, speakers):
    turns = diarizer(load_wav(testdata / f"diarization/{name}.wav"))
    assert len({t.speaker for t in turns}) == speakers


def test_a_quiet_meeting_keeps_its_speakers(diarizer, testdata):
    """The segmentation model gates out chunks under a fixed level: 26 dB down, this
    4-person AMI excerpt came back as one speaker before quiet audio was raised. The
    pipeline raises it itself, for users who load it with pyannote directly."""
    audio = load_wav(testdata / "diarization/EN2002a_30s.wav")

    def turns(samples: np.ndarray) -> list[SpeakerTurn]:
        file = {"waveform": torch.from_numpy(samples)[None], "sample_rate": SAMPLE_RATE}
        return annotation_to_turns(diarizer.pipeline(file))

    native, quiet = turns(audio), turns(audio * np.float32(0.05))
    assert len({t.speaker for t in quiet}) == len({t.speaker for t in native}) >= 3
    whole = Timeline([Segment(0.0, len(audio) / SAMPLE_RATE)], uri="EN2002a_30s")
    assert der(to_annotation(native, uri="EN2002a_30s"), quiet, whole) <= 0.02


def test_every_pipeline_gets_a_quiet_recording_raised():
    """pyannote's own pipelines gate quiet chunks too (segmentation-3.0 as well)."""
    heard = []

    class Recording(Pipeline):
        def apply(self, file, **kwargs):
            heard.append(file["waveform"].numpy()[0])
            return Annotation()

    quiet = np.float32(1e-3) * np.sin(np.arange(SAMPLE_RATE * 4) / 7.0).astype(np.float32)
    PyannotePipelineDiarizer(Recording())(quiet)
    assert speech_level_db(heard[0]) == pytest.approx(MIN_SPEECH_LEVEL_DB, abs=0.1)


def test_single_speaker_is_one_speaker(diarizer, testdata):
    from speakerscribe.audio import decode_audio_bytes

    audio = decode_audio_bytes((testdata / "faster-whisper/jfk.flac").read_bytes())
    assert len({t.speaker for t in diarizer(audio)}) == 1


@pytest.mark.parametrize("take", ["snt1", "snt2", "snt3"])
def test_two_short_clips_of_two_voices_are_two_speakers(diarizer, testdata, take):
    """Five seconds, five windows: too few for an eigengap, so linkage decides."""
    clips = [load_wav(testdata / f"speechbrain/{voice}_{take}.wav") for voice in ("spk1", "spk2")]
    mix = np.concatenate([clips[0], np.zeros(SAMPLE_RATE // 2, np.float32), clips[1]])
    turns = diarizer(mix)
    first_ends = len(clips[0]) / SAMPLE_RATE
    speakers = {t.speaker for t in turns}
    assert len(speakers) == 2, turns
    assert {t.speaker for t in turns if t.end <= first_ends + 0.1} != {
        t.speaker for t in turns if t.start >= first_ends
    }


def test_one_short_clip_is_one_speaker(diarizer, testdata):
    turns = diarizer(load_wav(testdata / "speechbrain/spk1_snt1.wav"))
    assert len({t.speaker for t in turns}) == 1


def test_max_speakers_hint_bounds_the_count(diarizer, testdata):
    turns = diarizer(load_wav(testdata / "diarization/paa_example.wav"), max_speakers=2)
    assert 1 <= len({t.speaker for t in turns}) <= 2


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
    with pytest.raises(BundledModelMissing, match="make models"):
        load_diarizer("bundled", cache_dir=tmp_path)
    with pytest.raises(BundledModelMissing, match="make models"):
        BundledDiarization(
            segmentation=tmp_path / "nothing.bin",
            embedding=tmp_path / "nothing.pt",
            embedding_architecture=tmp_path / "nothing.py",
        )


def test_a_config_from_an_older_release_says_make_models(tmp_path):
    """Caches written before the move name ``speakerscribe.bundled_diarization``."""
    folder = tmp_path / "bundled-diarization"
    folder.mkdir()
    old = PIPELINE_CONFIG.replace(
        PIPELINE_CLASS, "speakerscribe.bundled_diarization.BundledDiarization"
    )
    (folder / "config.yaml").write_text(old)
    with pytest.raises(BundledModelMissing, match="older release.*make models"):
        load_diarizer("bundled", cache_dir=tmp_path)


def test_a_config_without_a_newer_value_keeps_its_own_and_defaults_the_rest(tmp_path):
    """pyannote would re-instantiate an incomplete pipeline with all defaults at its
    first call, dropping the values the config does give."""
    write_pipeline_config(tmp_path)
    config = tmp_path / "bundled-diarization" / "config.yaml"
    written = yaml.safe_load(config.read_text())
    written["params"]["reassignment"] = {"purity": 0.6}  # as before change_agreement
    for spec in (SEGMENTATION, CAMPPLUS_WEIGHTS, CAMPPLUS_ARCHITECTURE):
        (tmp_path / spec.target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(DEFAULT_MODEL_CACHE / spec.target, tmp_path / spec.target)
    config.write_text(yaml.safe_dump(written))
    pipeline = load_diarizer("bundled", cache_dir=tmp_path).pipeline
    assert pipeline.instantiated
    assert pipeline.reassignment.purity == 0.6
    assert (
        pipeline.reassignment.change_agreement
        == DEFAULT_PARAMETERS["reassignment"]["change_agreement"]
    )


def write_pipeline_dir(directory: Path, checkpoint: Path) -> Path:
    """A user's own local pipeline: the bundled one copied, its files under ``$model/``."""
    cache = DEFAULT_MODEL_CACHE
    for spec in (SEGMENTATION, CAMPPLUS_WEIGHTS, CAMPPLUS_ARCHITECTURE):
        target = directory / "models" / Path(spec.target).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(cache / spec.target, target)
    config = yaml.safe_load(PIPELINE_CONFIG)
    config["pipeline"]["params"] = {
        "segmentation": f"$model/models/{Path(SEGMENTATION.target).name}",
        "embedding": f"$model/models/{Path(CAMPPLUS_WEIGHTS.target).name}",
        "embedding_architecture": f"$model/models/{Path(CAMPPLUS_ARCHITECTURE.target).name}",
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
    assert len({t.speaker for t in turns}) == 2
    assert len({t.speaker for t in diarizer(audio, num_speakers=1)}) == 1


def test_bundled_default_is_a_pipeline_directory():
    """The default takes the same path as any local pipeline: config.yaml + checkpoints."""
    assert (bundled_pipeline_directory() / "config.yaml").is_file()
    assert isinstance(load_diarizer("bundled").pipeline, BundledDiarization)


def test_every_enrolment_of_one_clip_per_voice_names_the_other_clips(diarizer, testdata):
    """known_speaker_references on the speechbrain clips: right names at the default
    threshold, and a voice that was not enrolled keeps its letter."""
    trials = run_trials(diarizer, load_clips(testdata), load_settings().known_speaker_threshold)
    assert trials.failures == []
    assert (trials.right, trials.unnamed) == (trials.named, trials.strangers) == (36, 18)


def test_sub_batches_give_the_rows_of_one_call_in_order():
    threads = set()
    all_parts_at_once = threading.Barrier(3, timeout=10)  # a pool may reuse an idle thread

    def rows(batch):
        threads.add(threading.get_ident())
        all_parts_at_once.wait()
        return np.asarray(batch, dtype=np.float32)[:, None] * 2

    batches = SubBatches(3)
    assert batches.run(rows, list(range(7))).ravel().tolist() == [2.0 * i for i in range(7)]
    assert len(threads) > 1
    doubled = SubBatches(1).run(lambda batch: np.asarray(batch, dtype=np.float32) * 2, [5])
    assert doubled.ravel().tolist() == [10.0]
    first, second = batches.run(lambda batch: (rows(batch), -rows(batch)), list(range(5)))
    assert (first.ravel().tolist(), second.ravel().tolist()) == (
        [0, 2, 4, 6, 8],
        [0, -2, -4, -6, -8],
    )
    with pytest.raises(ValueError, match="at least 1"):
        SubBatches(0)


def test_on_cpu_the_bundled_diarizer_splits_its_batches_over_one_thread_workers(
    diarizer, pyannote_data, monkeypatch
):
    """Workers of one torch thread each give the turns of one call on all the cores."""
    audio = load_wav(pyannote_data / "sample.wav")
    threads = torch.get_num_threads()
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    try:
        diarizer.use_cpu_threads(0)
        assert torch.get_num_threads() == 1
        assert diarizer.pipeline._segmentation.sub_batches.workers == 2
        assert diarizer.pipeline._embedding.sub_batches.workers == 2
        assert diarizer.pipeline._embedding.sub_batches is diarizer.sub_batches
        split = diarizer(audio)
        diarizer.use_cpu_threads(1)
        whole = diarizer(audio)
    finally:
        diarizer.use_cpu_threads(0)
        torch.set_num_threads(threads)
    assert [t.speaker for t in split] == [t.speaker for t in whole]
    np.testing.assert_allclose(
        [(t.start, t.end) for t in split], [(t.start, t.end) for t in whole], atol=0.02
    )


def test_on_a_gpu_the_threads_are_left_alone(diarizer):
    threads = torch.get_num_threads()
    gpu = PyannotePipelineDiarizer.__new__(PyannotePipelineDiarizer)
    gpu.pipeline, gpu.device = diarizer.pipeline, torch.device("cuda")
    workers = diarizer.pipeline._segmentation.sub_batches
    gpu.use_cpu_threads(3)
    assert torch.get_num_threads() == threads
    assert diarizer.pipeline._segmentation.sub_batches is workers


def _voices(rng, speakers: int, windows: int, spread: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    centres = rng.normal(size=(speakers, 192))
    labels = np.repeat(np.arange(speakers), windows)
    points = centres[labels] + spread * rng.normal(size=(len(labels), 192))
    return points / np.linalg.norm(points, axis=1, keepdims=True), labels


@pytest.mark.parametrize("speakers", [1, 2, 3, 6, 9])
def test_spectral_count_from_eigengap(speakers):
    points, _ = _voices(np.random.default_rng(speakers), speakers, windows=20)
    assert len(np.unique(spectral_labels(points))) == speakers


def test_spectral_takes_the_hinted_count():
    points, _ = _voices(np.random.default_rng(0), 3, windows=20)
    assert len(np.unique(spectral_labels(points, num_speakers=2))) == 2


def test_linkage_splits_two_voices_of_a_few_windows():
    points, truth = _voices(np.random.default_rng(5), 2, windows=3)
    labels = linkage_labels(points, threshold=0.5)
    assert len(np.unique(labels)) == 2
    assert len(np.unique(linkage_labels(points, threshold=0.5, num_speakers=1))) == 1


def test_voices_are_counted_on_one_speaker_speech(diarizer, monkeypatch):
    """Ten seconds of two people talking at once: on all windows the blend counts as a
    voice of its own, on the one-speaker windows it does not, and its windows then take
    one of the two voices. Windows already embedded are not embedded again."""
    rng = np.random.default_rng(0)
    voices = rng.normal(size=(3, 192))

    def voice_at(t: float) -> np.ndarray:
        return [voices[0], voices[0] + voices[1], voices[1], voices[2]][min(int(t // 10), 3)]

    asked: list[tuple[float, float]] = []

    def embed_windows(audio, windows, batch_size=64):
        asked.extend(windows)
        rows = np.stack([voice_at((a + b) / 2) + 0.6 * rng.normal(size=192) for a, b in windows])
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    pipeline = diarizer.pipeline
    windows = speech_windows([(0.0, 40.0)], pipeline.window_s, pipeline.window_step_s, 0.4)
    embeddings = embed_windows(None, windows)
    asked.clear()
    assert pipeline._labels(embeddings, None, 1, 15).max() + 1 == 4
    monkeypatch.setattr(pipeline._embedding, "embed_windows", embed_windows)
    one_speaker = [(0.0, 10.0), (20.0, 40.0)]
    labels = pipeline._voices(None, windows, embeddings, one_speaker, None, 1, 15)
    assert labels.max() + 1 == 3
    middles = np.array([(a + b) / 2 for a, b in windows])
    first, second, third = (set(labels[middles // 10 == k].tolist()) for k in (0, 2, 3))
    assert len(first | second | third) == 3 and len(first) == len(second) == len(third) == 1
    assert set(labels[(middles > 10) & (middles < 20)].tolist()) <= first | second
    assert asked and not set(asked) & set(windows)
    asked.clear()
    hinted = pipeline._voices(None, windows, embeddings, one_speaker, 3, 1, 15)
    assert hinted.max() + 1 == 3 and not asked


def _tidy(points: np.ndarray, labels: np.ndarray) -> int:
    tidy = tidy_clusters(
        points, labels, min_cluster_windows=4, minor_merge_threshold=0.5, merge_threshold=0.8
    )
    return len(np.unique(tidy))


def test_tiny_cluster_of_a_known_voice_is_folded_in():
    points, labels = _voices(np.random.default_rng(1), 3, windows=10)
    labels = labels.copy()
    labels[:3] = 3  # three windows of speaker 0 split off
    assert _tidy(points, labels) == 3


def test_tiny_cluster_of_a_new_voice_is_kept():
    """Somebody who says one sentence is still a speaker."""
    points, labels = _voices(np.random.default_rng(2), 3, windows=10)
    stranger, _ = _voices(np.random.default_rng(3), 1, windows=2)
    assert _tidy(np.concatenate([points, stranger]), np.concatenate([labels, [3, 3]])) == 4


def test_one_voice_split_in_two_is_merged():
    points, labels = _voices(np.random.default_rng(4), 2, windows=10)
    labels = labels.copy()
    labels[:5] = 2  # speaker 0 as two big clusters
    assert _tidy(points, labels) == 2


def _chunks_hearing_a_change(hearing: int, change_at: float = 12.0):
    """10 ms frames, 5 s chunks every 0.5 s over 20 s; two local speakers that swap at
    ``change_at`` in ``hearing`` of the chunks that see it, one speaker in the rest."""
    offsets = np.arange(500) * 0.01 + 0.005
    starts = np.arange(31) * 0.5
    active = np.zeros((len(starts), len(offsets), 3), dtype=bool)
    heard = 0
    for chunk, start in enumerate(starts):
        times = start + offsets
        seen = start + 0.5 <= change_at <= start + 4.5
        if seen and heard < hearing:
            active[chunk, :, 0] = times < change_at
            active[chunk, :, 1] = times >= change_at + 0.1
            heard += 1
        else:
            active[chunk, :, 0] = True
    return active, starts, offsets


@pytest.mark.parametrize(("hearing", "found"), [(4, [12.0]), (2, [])])
def test_a_change_of_turn_needs_enough_chunks_to_hear_it(hearing, found):
    active, starts, offsets = _chunks_hearing_a_change(hearing)
    changes = turn_changes(active, starts, offsets, chunk_duration=5.0, agreement=0.3)
    assert changes == pytest.approx(found, abs=0.1)


def test_a_short_piece_takes_the_voice_nearest_its_own_embedding():
    times = np.arange(600) * 0.01 + 0.005
    speaking = np.zeros((600, 2))
    speaking[:420, 0] = 1.0  # speaker 0 from 0 to 4.2 s, with a change heard at 1 s
    speaking[450:, 1] = 1.0  # speaker 1 from 4.5 s
    embedded = []

    def embed(spans):
        embedded.extend(spans)
        return np.array(
            [[0.2, 0.9] if end <= 1.05 or start >= 4.4 else [0.9, 0.2] for start, end in spans]
        )

    moved = reassign_short_pieces(
        speaking, times, [1.0], np.eye(2), embed, shortest_s=0.5, longest_s=3.0
    )
    assert moved == 1
    assert speaking[:100, 1].all() and not speaking[:100, 0].any()  # 0-1 s: speaker 1 now
    assert speaking[100:420, 0].all()  # 1-4.2 s: longer than 3 s, not looked at again
    assert speaking[450:, 1].all()  # 4.5-6 s: 1.5 s, embedded and kept
    assert [round(start, 2) for start, _ in embedded] == [0.0, 4.5]


def test_a_piece_only_heard_under_another_speaker_is_left_alone():
    times = np.arange(400) * 0.01 + 0.005
    speaking = np.zeros((400, 2))
    speaking[:, 0] = 1.0
    speaking[100:180, 1] = 1.0  # 0.8 s, all of it over speaker 0
    moved = reassign_short_pieces(
        speaking, times, [], np.eye(2), lambda spans: np.eye(2)[: len(spans)], 0.5, 3.0
    )
    assert moved == 0 and speaking[100:180, 1].all()
