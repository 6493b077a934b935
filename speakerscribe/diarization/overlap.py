"""Overlapped speech: where two speakers talk at once, and which words fall there.

Three pieces, all Ray-free:

- ``overlap_regions(turns)``: where the diarizer's own (overlap-aware) turns of two
  different speakers intersect.
- ``OverlapDetector``: overlapped speech read straight from the diarizer's pyannote
  segmentation model, as the second most active of its local speakers (the idea of
  pyannote.audio 3's ``OverlappedSpeechDetection``, which pyannote.audio 4 removed).
- ``flag_overlaps(segments, regions)``: sets ``overlap`` on words and segments.

Callers use the union of the first two (``merge_regions``): the diarizer's
clustering often gives both local speakers of a short overlap the same label, so its
turns alone miss most overlaps (none are found in pyannote's AMI excerpts dev00/dev01),
while where they do overlap (the phone call sample.wav) they match the reference
closely and the union costs nothing.

This module imports neither torch nor pyannote at import time (the ingress uses
``flag_overlaps``); ``OverlapDetector`` loads them when built.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from speakerscribe.diarization.sub_batches import SubBatches
from speakerscribe.loudness import raised_to_level
from speakerscribe.types import SAMPLE_RATE, Segment, SpeakerTurn

if TYPE_CHECKING:  # pragma: no cover - imports for type checkers only
    from pyannote.core import SlidingWindowFeature

Region = tuple[float, float]

WORD_TOLERANCE_S = 0.1
"""A word within this many seconds of an overlap region counts as touching it.

Whisper's word times come from cross-attention alignment on 20 ms frames and are
typically off by about 0.1 s (short words often get zero length), and region edges
are only as sharp as the detector's 0.2 s chunk step, so a word that ends 50 ms before
a region edge is as likely in it as not.
"""


# ------------------------------------------------------------------------- regions


def merge_regions(regions: Iterable[Region]) -> list[Region]:
    """Sorted, non-empty, non-overlapping regions; touching or overlapping ones are joined."""
    merged: list[list[float]] = []
    for start, end in sorted((float(s), float(e)) for s, e in regions):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def intersect_regions(a: Iterable[Region], b: Iterable[Region]) -> list[Region]:
    """Where both region lists hold (each merged first)."""
    x, y = merge_regions(a), merge_regions(b)
    out: list[Region] = []
    i = j = 0
    while i < len(x) and j < len(y):
        start, end = max(x[i][0], y[j][0]), min(x[i][1], y[j][1])
        if end > start:
            out.append((start, end))
        if x[i][1] < y[j][1]:
            i += 1
        else:
            j += 1
    return out


def regions_duration(regions: Iterable[Region]) -> float:
    """Seconds covered by the union of ``regions``."""
    return sum(end - start for start, end in merge_regions(regions))


def overlap_regions(turns: Sequence[SpeakerTurn]) -> list[Region]:
    """Where turns of at least two different speakers intersect (sorted, merged).

    Two turns of the same speaker that overlap do not count; turns that only touch
    (one ends where the next starts) do not either.
    """
    events: list[tuple[float, int, str]] = []
    for turn in turns:
        if turn.end > turn.start:
            events.append((float(turn.start), 1, turn.speaker))
            events.append((float(turn.end), -1, turn.speaker))
    events.sort(key=lambda e: (e[0], e[1]))  # ends before starts at the same instant
    active: dict[str, int] = defaultdict(int)
    speaking = 0
    found: list[Region] = []
    opened: float | None = None
    for time, change, speaker in events:
        before = active[speaker]
        active[speaker] = before + change
        if before == 0 and change > 0:
            speaking += 1
        elif before == 1 and change < 0:
            speaking -= 1
        if speaking >= 2 and opened is None:
            opened = time
        elif speaking < 2 and opened is not None:
            found.append((opened, time))
            opened = None
    return merge_regions(found)


# ------------------------------------------------------------------------ detector


def second_speaker_curve(
    chunks: np.ndarray,
    chunk_step: float,
    frame_step: float,
    num_frames: int,
    *,
    warm_up: float = 0.1,
    quantile: float = 0.9,
) -> np.ndarray:
    """Frame-level "a second speaker is active" score from sliding-window segmentation.

    ``chunks`` is ``(num_chunks, frames_per_chunk, local_speakers)``, chunk ``c``
    starting at ``c * chunk_step`` seconds, its frame ``i`` being global frame
    ``round(c * chunk_step / frame_step) + i`` (pyannote's own convention). Each chunk
    gives, per frame, its second highest local speaker activation; the first and last
    ``warm_up`` fraction of each chunk is left out (the model sees little context
    there), except at the very start and end of the audio. Frame ``f``'s score is the
    ``quantile`` of what the chunks covering it say.

    pyannote averages the chunks instead; with many overlapping chunks, a short overlap
    that only the chunks seeing it with enough context pick up is averaged away,
    while a high quantile keeps it (a max would keep every chunk's glitch too).
    """
    num_chunks, per_chunk, num_speakers = chunks.shape
    if num_chunks == 0 or num_frames <= 0:
        return np.zeros(max(num_frames, 0), dtype=np.float32)
    if num_speakers < 2:
        return np.zeros(num_frames, dtype=np.float32)
    second = np.partition(chunks, -2, axis=-1)[:, :, -2].astype(np.float32)
    trim = int(round(warm_up * per_chunk))
    if trim and per_chunk > 2 * trim:
        first, last = second[0].copy(), second[-1].copy()
        second[:, :trim] = np.nan
        second[:, per_chunk - trim :] = np.nan
        second[0, :trim] = first[:trim]
        second[-1, per_chunk - trim :] = last[per_chunk - trim :]
    # each frame is covered by at most this many consecutive chunks: one slot each
    slots = int(np.ceil(per_chunk * frame_step / chunk_step)) + 2
    values = np.full((num_frames, slots), np.nan, dtype=np.float32)
    for c in range(num_chunks):
        first_frame = int(round(c * chunk_step / frame_step))
        if first_frame >= num_frames:
            break
        count = min(per_chunk, num_frames - first_frame)
        values[first_frame : first_frame + count, c % slots] = second[c, :count]
    return _nan_quantile_rows(values, quantile)


def _nan_quantile_rows(values: np.ndarray, q: float) -> np.ndarray:
    """``np.nanquantile(values, q, axis=1)`` (linear), fast; rows of only NaN give 0."""
    ordered = np.sort(values, axis=1)  # NaN sort last
    valid = np.sum(~np.isnan(values), axis=1)
    position = q * np.maximum(valid - 1, 0)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, np.maximum(valid - 1, 0))
    rows = np.arange(values.shape[0])
    lo_v, hi_v = ordered[rows, low], ordered[rows, high]
    curve = lo_v + (hi_v - lo_v) * (position - low)
    return np.where(valid > 0, np.nan_to_num(curve), 0.0).astype(np.float32)


def hysteresis_regions(
    curve: np.ndarray,
    frame_step: float,
    *,
    onset: float,
    offset: float,
    min_duration_on: float = 0.0,
    min_duration_off: float = 0.0,
    frame_offset: float = 0.0,
) -> list[Region]:
    """Regions where ``curve`` rises above ``onset`` until it falls below ``offset``.

    Frame ``i`` is at ``frame_offset + i * frame_step`` seconds. Gaps shorter than
    ``min_duration_off`` are filled first, then regions shorter than
    ``min_duration_on`` dropped (pyannote's ``Binarize`` order).
    """
    regions: list[list[float]] = []
    active = False
    start = 0
    for i, value in enumerate(np.asarray(curve, dtype=np.float64)):
        if not active and value > onset:
            active, start = True, i
        elif active and value < offset:
            active = False
            regions.append([start, i])
    if active:
        regions.append([start, len(curve)])
    timed = [[frame_offset + a * frame_step, frame_offset + b * frame_step] for a, b in regions]
    filled: list[list[float]] = []
    for start_s, end_s in timed:
        if filled and start_s - filled[-1][1] < min_duration_off:
            filled[-1][1] = end_s
        else:
            filled.append([start_s, end_s])
    return [(a, b) for a, b in filled if b - a >= min_duration_on and b > a]


class OverlapDetector:
    """Overlapped speech from a pyannote segmentation model (multi-label, e.g.
    pyannote/segmentation 2.x: 5 s chunks, 3 local speakers).

    The model slides over the audio every ``step`` seconds; per frame, the
    ``quantile`` over chunks of the second highest local speaker activation
    (``second_speaker_curve``) is binarised with hysteresis (``onset``/``offset``), and
    regions shorter than ``min_duration_on`` are dropped.

    Defaults were chosen with ``load/evaluate_overlap.py`` (which prints the trade-off
    behind them: reference overlap covered by flagged words against flagged time outside
    it). A high quantile of the second activation, not pyannote 3's mean over chunks,
    because short far-field overlaps keep that mean under any useful onset.

    Tuned on three files (the AMI excerpts and a phone call): "works on these".
    The model is shared with the diarizer (``Inference`` moves it to ``device``),
    so build this on the diarizer's device and call it under the same lock.
    """

    def __init__(
        self,
        segmentation: Any,
        device: Any = "cpu",
        *,
        step: float = 0.2,
        warm_up: float = 0.1,
        quantile: float = 0.9,
        onset: float = 0.2,
        offset: float = 0.2,
        min_duration_on: float = 0.1,
        min_duration_off: float = 0.0,
        batch_size: int = 32,
        sub_batches: SubBatches | None = None,
    ):
        import torch

        import speakerscribe.diarization.pyannote_offline  # noqa: F401  (before pyannote.audio)

        # isort: split
        from speakerscribe.diarization.bundled import SubBatchedInference

        if not 0.0 <= quantile <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {quantile}")
        if offset > onset:
            raise ValueError(f"offset ({offset}) must not exceed onset ({onset})")
        if getattr(segmentation.specifications, "powerset", False):
            raise ValueError("OverlapDetector needs a multi-label segmentation model, not powerset")
        self.model = segmentation
        self.device = torch.device(device)
        self.step = float(step)
        self.warm_up = float(warm_up)
        self.quantile = float(quantile)
        self.onset = float(onset)
        self.offset = float(offset)
        self.min_duration_on = float(min_duration_on)
        self.min_duration_off = float(min_duration_off)
        self._inference = SubBatchedInference(
            segmentation,
            step=self.step,
            skip_aggregation=True,
            device=self.device,
            batch_size=batch_size,
        )
        if sub_batches is not None:  # the diarizer's workers, on the same model
            self._inference.sub_batches = sub_batches
        frames = segmentation.receptive_field
        self.frame_step = float(frames.step)
        self.frame_offset = float(frames.start + frames.duration / 2)

    def scores(self, audio: np.ndarray) -> np.ndarray:
        """Frame-level second-speaker score; frame ``i`` is at ``frame_time(i)``."""
        import torch

        waveform = np.ascontiguousarray(np.asarray(audio, dtype=np.float32))
        if waveform.ndim != 1:
            raise ValueError(f"expected 1-D mono audio, got shape {waveform.shape}")
        waveform = raised_to_level(waveform)
        num_frames = int(np.ceil(len(waveform) / SAMPLE_RATE / self.frame_step))
        if len(waveform) == 0 or not np.any(waveform):
            return np.zeros(num_frames, dtype=np.float32)
        file = {"waveform": torch.from_numpy(waveform)[None], "sample_rate": SAMPLE_RATE}
        with torch.inference_mode():
            # sliding windows of a one-task model: one SlidingWindowFeature, never the tuple
            chunks = cast("SlidingWindowFeature", self._inference(file))
        return second_speaker_curve(
            np.asarray(chunks.data),
            self.step,
            self.frame_step,
            num_frames,
            warm_up=self.warm_up,
            quantile=self.quantile,
        )

    def frame_time(self, index: int) -> float:
        return self.frame_offset + index * self.frame_step

    def regions(self, scores: np.ndarray, duration: float | None = None) -> list[Region]:
        """Overlap regions (seconds) from ``scores``, clipped to ``[0, duration]``."""
        found = hysteresis_regions(
            scores,
            self.frame_step,
            onset=self.onset,
            offset=self.offset,
            min_duration_on=self.min_duration_on,
            min_duration_off=self.min_duration_off,
            frame_offset=self.frame_offset,
        )
        end = float("inf") if duration is None else float(duration)
        return merge_regions((max(0.0, a), min(end, b)) for a, b in found)

    def __call__(self, audio: np.ndarray) -> list[Region]:
        """Overlapped speech in 16 kHz mono float32 audio: sorted ``(start, end)`` seconds."""
        return self.regions(self.scores(audio), len(audio) / SAMPLE_RATE)


# ----------------------------------------------------------------------- flagging


def flag_overlaps(
    segments: Sequence[Segment],
    regions: Iterable[Region],
    *,
    tolerance: float = WORD_TOLERANCE_S,
) -> Sequence[Segment]:
    """Set ``overlap`` on every word and segment, in place (``segments`` is returned).

    A word is flagged when ``[start - tolerance, end + tolerance]`` intersects a region;
    a segment when any of its words is, or, if it has no words, when its own span
    (widened the same way) does.
    """
    merged = merge_regions(regions)
    starts = [start for start, _ in merged]

    def touches(start: float, end: float) -> bool:
        low, high = start - tolerance, end + tolerance
        # regions are disjoint and sorted: only the last one starting before `high` can hit
        i = bisect.bisect_left(starts, high) - 1
        return i >= 0 and merged[i][1] > low

    for segment in segments:
        if segment.words:
            for word in segment.words:
                word.overlap = touches(word.start, word.end)
            segment.overlap = any(word.overlap for word in segment.words)
        else:
            segment.overlap = touches(segment.start, segment.end)
    return segments
