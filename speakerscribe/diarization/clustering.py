"""Clustering speaker embeddings into voices: the count from an eigengap (spectral), or
from a similarity threshold (average linkage) in short audio, then tidied."""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.linalg import eigh
from sklearn.cluster import KMeans

MIN_NEW_VOICE_WINDOWS = 2
"""One 1.5 s window is too little to tell a new voice from a noisy one of a known voice."""


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


def centroids(embeddings: np.ndarray, labels: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """The unit mean of each cluster's rows, in the order of ``clusters``."""
    means = np.stack([embeddings[labels == c].mean(axis=0) for c in clusters])
    return means / np.linalg.norm(means, axis=1, keepdims=True).clip(min=1e-12)


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
    major_centroids = centroids(embeddings, labels, major)
    for minor in clusters[sizes < big_enough]:
        members = labels == minor
        centroid = centroids(embeddings, labels, np.array([minor]))[0]
        lone_window = members.sum() < MIN_NEW_VOICE_WINDOWS
        if len(np.unique(labels)) > min_speakers and (
            lone_window or (major_centroids @ centroid).max() >= minor_merge_threshold
        ):
            labels[members] = major[np.argmax(embeddings[members] @ major_centroids.T, axis=1)]
    while (clusters := np.unique(labels)).size > max(1, min_speakers):
        voices = centroids(embeddings, labels, clusters)
        similarity = np.triu(voices @ voices.T, k=1)
        first, second = np.unravel_index(np.argmax(similarity), similarity.shape)
        if similarity[first, second] < merge_threshold:
            break
        labels[labels == clusters[second]] = clusters[first]
    return np.unique(labels, return_inverse=True)[1]
