"""A second look at short turns: each one's own voice, against the clusters' voices.

The clustering hears speech through 1.5 s windows, so a short turn that follows another
speaker without a pause ("Hello." answered at once) shares its windows with that
speaker and is labelled with them. The segmentation often hears the change anyway, in
some of the overlapping chunks that cover it. Where enough chunks agree, turns are cut
there; each short piece is then embedded on its own (where nobody else speaks) and
takes the cluster whose centroid is nearest.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

CHANGE_GAP_S = 0.3
"""One local speaker stopping this close to another's start is a change of turn."""

CHANGE_TOLERANCE_S = 0.2
"""Changes that chunks place this close together are the same change."""

CHUNK_EDGE_S = 0.5
"""A chunk does not count as seeing a time this close to its own edges."""

SPAN_STEP_S = 0.25
"""Embedded stretches end early, at a multiple of this from their start, so that pieces
of nearly the same length share one batched forward pass. The start is kept: a short
reply is told apart by its first syllables."""


def turn_changes(
    active: np.ndarray,
    chunk_starts: np.ndarray,
    frame_offsets: np.ndarray,
    chunk_duration: float,
    agreement: float,
) -> list[float]:
    """Times where at least ``agreement`` of the chunks that see them hear a change.

    ``active`` is (chunks, frames, local speakers) of booleans; a chunk hears a change
    where one local speaker stops and another starts within ``CHANGE_GAP_S``.
    """
    chunks, frames, local = active.shape
    if chunks == 0 or local < 2:
        return []
    frame_step = float(frame_offsets[1] - frame_offsets[0]) if frames > 1 else 1.0
    gap = int(round(CHANGE_GAP_S / frame_step))
    edges = np.diff(active.astype(np.int8), axis=1, prepend=0, append=0)
    heard: list[tuple[float, int]] = []
    for chunk in range(chunks):
        onsets = [np.flatnonzero(edges[chunk, :, k] == 1) for k in range(local)]
        offsets = [np.flatnonzero(edges[chunk, :, k] == -1) - 1 for k in range(local)]
        for k in range(local):
            for stop in offsets[k]:
                if not 0 < stop < frames - 1:
                    continue  # a turn cut by the chunk's edge is no change
                for j in range(local):
                    if j == k:
                        continue
                    near = onsets[j][(np.abs(onsets[j] - stop) <= gap) & (onsets[j] > 0)]
                    for start in near:
                        middle = frame_offsets[(int(start) + int(stop)) // 2]
                        heard.append((float(chunk_starts[chunk] + middle), chunk))
    heard.sort()
    step = float(chunk_starts[1] - chunk_starts[0]) if chunks > 1 else chunk_duration
    changes: list[float] = []
    first = 0
    while first < len(heard):
        last = first
        while last + 1 < len(heard) and heard[last + 1][0] - heard[first][0] <= CHANGE_TOLERANCE_S:
            last += 1
        group = heard[first : last + 1]
        at = float(np.median([time for time, _ in group]))
        lowest = max(0, int(np.ceil((at - chunk_duration + CHUNK_EDGE_S - chunk_starts[0]) / step)))
        highest = min(chunks - 1, int(np.floor((at - CHUNK_EDGE_S - chunk_starts[0]) / step)))
        seeing = highest - lowest + 1
        if seeing > 0 and len({chunk for _, chunk in group}) >= agreement * seeing:
            changes.append(at)
        first = last + 1
    return changes


def reassign_short_pieces(
    speaking: np.ndarray,
    frame_times: np.ndarray,
    changes: list[float],
    centroids: np.ndarray,
    embed: Callable[[list[tuple[float, float]]], np.ndarray],
    shortest_s: float,
    longest_s: float,
) -> int:
    """Give each short piece of a turn the cluster nearest its own voice, in place.

    ``speaking`` is (frames, speakers), one column per cluster, at ``frame_times``
    (frame middles). A turn is cut at ``changes``; a piece between ``shortest_s`` and
    ``longest_s`` long is embedded over its longest stretch where only it speaks (at
    least ``shortest_s``). Longer pieces already have several windows' say. Returns
    how many pieces changed speaker.
    """
    frames, speakers = speaking.shape
    if speakers < 2 or frames < 2:
        return 0
    step = float(frame_times[1] - frame_times[0])
    cuts = np.searchsorted(frame_times, np.asarray(changes, dtype=float))
    talking = speaking > 0
    alone = talking.sum(axis=1) == 1
    pieces: list[tuple[int, int, int]] = []  # (first frame, end frame, speaker)
    spans: list[tuple[float, float]] = []
    for speaker in range(speakers):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], talking[:, speaker], [0]])))
        for on, off in zip(edges[::2], edges[1::2], strict=True):
            inside = cuts[(cuts > on) & (cuts < off)]
            bounds = [int(on), *map(int, inside), int(off)]
            for first, end in zip(bounds[:-1], bounds[1:], strict=True):
                if not shortest_s <= (end - first) * step <= longest_s:
                    continue
                stretch = _longest_run(alone[first:end])
                if stretch is None or (stretch[1] - stretch[0]) * step < shortest_s:
                    continue
                pieces.append((first, end, speaker))
                spans.append(
                    _batchable(
                        frame_times[first + stretch[0]] - step / 2,
                        frame_times[first + stretch[1] - 1] + step / 2,
                    )
                )
    if not pieces:
        return 0
    nearest = np.argmax(embed(spans) @ centroids.T, axis=1)
    moved = 0
    for (first, end, speaker), voice in zip(pieces, nearest, strict=True):
        if voice != speaker:
            speaking[first:end, voice] = np.maximum(
                speaking[first:end, voice], speaking[first:end, speaker]
            )
            speaking[first:end, speaker] = 0
            moved += 1
    return moved


def _batchable(start: float, end: float) -> tuple[float, float]:
    length = float(np.floor((end - start) / SPAN_STEP_S + 1e-9)) * SPAN_STEP_S
    return start, start + length if length > 0 else end


def _longest_run(flags: np.ndarray) -> tuple[int, int] | None:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(np.int8), [0]])))
    if not len(edges):
        return None
    lengths = edges[1::2] - edges[::2]
    best = int(np.argmax(lengths))
    return int(edges[2 * best]), int(edges[2 * best + 1])
