"""Words to speakers: who said each word, and segments split where the speaker changes.

Each word takes the speaker whose turns overlap it most. Where two speakers both cover
a word and one of them only interjects (a "yeah" or "mm-hmm" over the other's long
turn), the word goes to the interjection, since the long turn covers it only because it
spans the whole exchange. A word no turn overlaps (the diarizer heard silence) takes the
nearest turn. Segments are then re-cut at every change of speaker and fitted to their
speaker's turns: widened out to them (Whisper's word times sit inside the speech, and a
segment that ends on its last word's end drops the rest of the turn), over another
speaker's segment only where the diarizer heard both (so overlapped speech keeps both
speakers), and cut back where Whisper ran a word on into silence. Labels become A, B,
C… in order of first appearance, as OpenAI's diarizing model names them. Last, no
segment edge sits over audio with no sound in it at all (``trim_to_sound``).
"""

from __future__ import annotations

import string
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Set
from itertools import accumulate

import numpy as np

from speakerscribe.loudness import SOUND_FRAME_S
from speakerscribe.types import Segment, SpeakerTurn, Word

COVERED_FRACTION = 0.5
"""A speaker counts as talking over a word when their turns cover this share of it."""

BACKCHANNEL_MAX_S = 1.5
"""Turns up to this long can be interjections ("yeah", "okay"), not a speaker's own talk."""

BACKCHANNEL_RATIO = 3.0
"""The other speaker's turn must be this many times longer, so ordinary overlapping turns
are settled by overlap alone."""


def speaker_for_span(start: float, end: float, turns: list[SpeakerTurn]) -> str | None:
    """Who said ``[start, end]``: the rules of ``_pick`` over every turn (one span; a
    whole transcript goes through ``assign_speakers``, which looks only at nearby turns)."""
    return _pick(start, end, turns, turns)


def _pick(
    start: float, end: float, touching: Iterable[SpeakerTurn], nearby: Iterable[SpeakerTurn]
) -> str | None:
    """The speaker of a span from the turns that touch it, else from the nearest of
    ``nearby``; the backchannel exception applies only when two speakers cover it."""
    length = end - start
    covered: dict[str, float] = {}  # speaker → share of the span their turns cover
    own: dict[str, float] = {}  # speaker → length of their turn sharing most with the span
    best: dict[str, float] = {}
    for turn in touching:
        if length > 0:
            share = (min(end, turn.end) - max(start, turn.start)) / length
            if share <= 0:
                continue
        elif turn.start <= start <= turn.end:
            share = 1.0  # a zero-length word (Whisper gives short words those) inside it
        else:
            continue
        covered[turn.speaker] = covered.get(turn.speaker, 0.0) + share
        if share > best.get(turn.speaker, -1.0):
            best[turn.speaker] = share
            own[turn.speaker] = turn.end - turn.start
    if covered:
        talking = [s for s, share in covered.items() if share >= COVERED_FRACTION]
        if len(talking) > 1:
            short = min(talking, key=own.__getitem__)
            if own[short] <= BACKCHANNEL_MAX_S and all(
                own[s] >= BACKCHANNEL_RATIO * own[short] for s in talking if s != short
            ):
                return short
        return max(covered, key=covered.__getitem__)
    middle = (start + end) / 2
    nearest = min(nearby, key=lambda t: _distance(middle, t), default=None)
    return None if nearest is None else nearest.speaker


def _distance(t: float, turn: SpeakerTurn) -> float:
    if turn.start <= t <= turn.end:
        return 0.0
    return min(abs(turn.start - t), abs(turn.end - t))


class _TurnSweep:
    """Turns sorted by start, walked once as spans come in order of start: each span sees
    only the turns touching it plus the nearest on either side, so long files stay linear
    (a window sized by the longest turn would make one long turn scan everything)."""

    def __init__(self, turns: list[SpeakerTurn]):
        self.turns = sorted(turns, key=lambda t: (t.start, t.end))
        self.next = 0  # first turn not yet started by the latest span's end
        self.active: list[SpeakerTurn] = []  # started, not ended before the latest span
        self.last: SpeakerTurn | None = None  # of the turns ended, the one ending latest
        self.previous_start = float("-inf")

    def around(self, start: float, end: float) -> tuple[list[SpeakerTurn], list[SpeakerTurn]]:
        """(turns touching ``[start, end]``, those plus the nearest before and after)."""
        if start < self.previous_start:
            raise ValueError("spans must come in order of start")
        self.previous_start = start
        while self.next < len(self.turns) and self.turns[self.next].start <= end:
            self.active.append(self.turns[self.next])
            self.next += 1
        kept: list[SpeakerTurn] = []
        for turn in self.active:
            if turn.end >= start:
                kept.append(turn)
            elif self.last is None or turn.end > self.last.end:
                self.last = turn
        self.active = kept
        nearby = ([self.last] if self.last is not None else []) + kept
        if self.next < len(self.turns):
            nearby.append(self.turns[self.next])
        return kept, nearby


def assign_speakers(segments: list[Segment], turns: list[SpeakerTurn]) -> None:
    """Set ``speaker`` on every word (and on word-less segments) in place."""
    if not turns:
        return
    spans: list[Word | Segment] = []
    for segment in segments:
        spans.extend(segment.words or [segment])
    spans.sort(key=lambda s: s.start)  # stable: equal starts keep transcript order
    sweep = _TurnSweep(turns)
    for span in spans:
        touching, nearby = sweep.around(span.start, span.end)
        span.speaker = _pick(span.start, span.end, touching, nearby)


def split_at_speaker_changes(segments: list[Segment]) -> list[Segment]:
    """One segment per run of words by the same speaker (a one-word backchannel is a run
    of its own); ids renumbered."""
    result: list[Segment] = []
    for segment in segments:
        if not segment.words:
            result.append(segment)
            continue
        runs: list[list[Word]] = []
        for word in segment.words:
            if runs and runs[-1][-1].speaker == word.speaker:
                runs[-1].append(word)
            else:
                runs.append([word])
        if len(runs) == 1:
            segment.speaker = runs[0][0].speaker
            result.append(segment)
            continue
        for run in runs:
            text = "".join(w.word for w in run)
            result.append(
                Segment(
                    id=0,
                    seek=segment.seek,
                    start=run[0].start,
                    end=run[-1].end,
                    text=text if text.startswith(" ") else " " + text,
                    tokens=[],  # tokens belong to the whole Whisper segment, not a part
                    temperature=segment.temperature,
                    avg_logprob=segment.avg_logprob,
                    compression_ratio=segment.compression_ratio,
                    no_speech_prob=segment.no_speech_prob,
                    words=run,
                    speaker=run[0].speaker,
                    logprobs=segment.logprobs if run is runs[0] else [],
                    overlap=any(w.overlap for w in run),
                )
            )
    for number, segment in enumerate(result):
        segment.id = number
    return result


WIDEN_MAX_S = 1.0
"""A segment grows at most this far past its words on each side: a turn whose words
Whisper did not hear does not stretch a subtitle over seconds of nothing."""

OVERHANG_S = 0.75
"""A segment edge further than this outside its speaker's turns is cut back to them:
Whisper stretches a last word over the silence after it (falcon_test: "like..." to
12.9 s, the turn ends at 11.1 s). Nearer edges stay, since the diarizer also misses the
soft ends of words that Whisper heard."""

MIN_WORD_S = 0.2
"""Cutting an edge back leaves at least this much of its outermost word."""


class _OwnTurns:
    """Each speaker's turns, sorted, with the running latest end so a bisection finds the
    first turn that can reach a time (one long turn does not make every lookup a scan)."""

    def __init__(self, turns: list[SpeakerTurn]):
        self.by_speaker: dict[str, list[SpeakerTurn]] = {}
        for turn in sorted(turns, key=lambda t: (t.start, t.end)):
            self.by_speaker.setdefault(turn.speaker, []).append(turn)
        self.ends = {
            speaker: list(accumulate((t.end for t in own), max))
            for speaker, own in self.by_speaker.items()
        }

    def touching(self, speaker: str | None, start: float, end: float) -> list[SpeakerTurn]:
        own = self.by_speaker.get(speaker or "", [])
        first = bisect_right(self.ends.get(speaker or "", []), start)
        found = []
        while first < len(own) and own[first].start < end:
            if own[first].end > start:
                found.append(own[first])
            first += 1
        return found


def _uncovered(start: float, end: float, turns: list[SpeakerTurn]) -> list[tuple[float, float]]:
    """The parts of ``[start, end]`` that none of ``turns`` (sorted by start) covers."""
    gaps, at = [], start
    for turn in turns:
        if turn.start > at:
            gaps.append((at, min(turn.start, end)))
        at = max(at, turn.end)
        if at >= end:
            return gaps
    return [*gaps, (at, end)]


class _BlockedSpans:
    """Spans no segment may grow over, sorted twice so each edge's limit is a bisection:
    the latest end among spans starting before a time, the earliest start among spans
    ending after one."""

    def __init__(self, spans: list[tuple[float, float]]):
        by_start = sorted(spans)
        self.starts = [a for a, _ in by_start]
        self.latest_end = list(accumulate((b for _, b in by_start), max))
        by_end = sorted(spans, key=lambda span: span[1])
        self.ends = [b for _, b in by_end]
        self.earliest_start = list(accumulate((a for a, _ in reversed(by_end)), min))[::-1]

    def lowest_start(self, start: float) -> float:
        """How far back an edge at ``start`` may move."""
        before = bisect_left(self.starts, start)
        return min(self.latest_end[before - 1], start) if before else float("-inf")

    def highest_end(self, end: float) -> float:
        """How far on an edge at ``end`` may move."""
        after = bisect_right(self.ends, end)
        return max(self.earliest_start[after], end) if after < len(self.ends) else float("inf")


def trim_to_turns(segment: Segment, touching: list[SpeakerTurn]) -> None:
    """Cut an edge lying more than ``OVERHANG_S`` outside the speaker's turns back to them
    (never to less than ``MIN_WORD_S`` of the outer word); word times are clipped too."""
    if not touching or not segment.words:
        return
    first_start = min(t.start for t in touching)
    last_end = max(t.end for t in touching)
    if segment.end > last_end + OVERHANG_S:
        segment.end = max(last_end, segment.words[-1].start + MIN_WORD_S, segment.start)
        for word in segment.words:
            word.end = min(word.end, segment.end)
            word.start = min(word.start, word.end)
    if segment.start < first_start - OVERHANG_S:
        segment.start = min(first_start, segment.words[0].end - MIN_WORD_S, segment.end)
        for word in segment.words:
            word.start = max(word.start, segment.start)
            word.end = max(word.end, word.start)


def widen_to_turns(segments: list[Segment], turns: list[SpeakerTurn]) -> None:
    """Fit each segment, in place, to its speaker's turns: edges far outside them are cut
    back (``trim_to_turns``), and edges grow out to the turns it overlaps, at most
    ``WIDEN_MAX_S`` past its words.

    A segment may grow over another speaker's segment only where the diarizer heard
    both at once (overlapped speech): the parts of a segment its own speaker's turns do
    not cover block the others. It never grows over its own speaker's next or previous
    segment. Text stays as it is.
    """
    own = _OwnTurns(turns)
    ordered = sorted(segments, key=lambda s: (s.start, s.end))
    touching = []
    for segment in ordered:
        found = own.touching(segment.speaker, segment.start, segment.end)
        trim_to_turns(segment, found)
        touching.append(found)
    blocked = _BlockedSpans(
        [
            gap
            for segment, found in zip(ordered, touching, strict=True)
            if found
            for gap in _uncovered(segment.start, segment.end, found)
        ]
    )
    next_own_start = [float("inf")] * len(ordered)
    following: dict[str | None, float] = {}
    for index in range(len(ordered) - 1, -1, -1):
        next_own_start[index] = following.get(ordered[index].speaker, float("inf"))
        following[ordered[index].speaker] = ordered[index].start
    previous_own_end: dict[str | None, float] = {}
    for index, segment in enumerate(ordered):
        found = touching[index]
        if found:
            low = max(
                found[0].start,
                segment.start - WIDEN_MAX_S,
                previous_own_end.get(segment.speaker, float("-inf")),
                blocked.lowest_start(segment.start),
            )
            high = min(
                max(t.end for t in found),
                segment.end + WIDEN_MAX_S,
                next_own_start[index],
                blocked.highest_end(segment.end),
            )
            segment.start = min(segment.start, low)
            segment.end = max(segment.end, high)
        previous_own_end[segment.speaker] = max(
            previous_own_end.get(segment.speaker, float("-inf")), segment.end
        )


def letter_label(index: int) -> str:
    """0 → A, 25 → Z, 26 → AA, as spreadsheets count."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = string.ascii_uppercase[rest] + letters
    return letters


def relabel_by_first_appearance(
    segments: list[Segment], keep: Set[str] = frozenset()
) -> dict[str, str]:
    """Rename speakers A, B, C… in order of first appearance; labels in ``keep`` (enrolled
    names) stay. Returns the mapping used."""
    mapping: dict[str, str] = {name: name for name in keep}
    letters = 0
    for segment in segments:
        for label in [w.speaker for w in segment.words] or [segment.speaker]:
            if label is not None and label not in mapping:
                while (letter := letter_label(letters)) in keep:
                    letters += 1
                mapping[label] = letter
                letters += 1
    for segment in segments:
        if segment.speaker is not None:
            segment.speaker = mapping[segment.speaker]
        for word in segment.words:
            if word.speaker is not None:
                word.speaker = mapping[word.speaker]
    return mapping


def trim_to_sound(segments: list[Segment], sounding: np.ndarray) -> None:
    """Move each segment's edges, in place, off the silence at them (``sounding``: per
    ``SOUND_FRAME_S`` frame, whether it holds sound, from ``loudness.sounding_frames``).

    Whisper runs a last word on over a gap of digital silence, and widening to the turns
    can too; nobody speaks there. Word times are clipped to the new edges. A segment with
    no sound under it at all is left as it is.
    """
    per_s = round(1 / SOUND_FRAME_S)
    for segment in segments:
        first = max(0, int(segment.start * per_s))
        last = min(len(sounding), int(np.ceil(segment.end * per_s)))
        heard = np.flatnonzero(sounding[first:last])
        if not len(heard):
            continue
        start = max(segment.start, (first + int(heard[0])) / per_s)
        end = min(segment.end, (first + int(heard[-1]) + 1) / per_s)
        if (start, end) == (segment.start, segment.end):
            continue
        segment.start, segment.end = start, end
        for word in segment.words:
            word.start = min(max(word.start, start), end)
            word.end = max(min(word.end, end), word.start)


def attribute_speakers(
    segments: list[Segment],
    turns: list[SpeakerTurn],
    keep: Set[str] = frozenset(),
    sounding: np.ndarray | None = None,
) -> list[Segment]:
    """The whole step: assign, split at changes, widen to the turns, trim off silence
    (where ``sounding`` is given), relabel A, B, C… (names in ``keep`` stay)."""
    assign_speakers(segments, turns)
    segments = split_at_speaker_changes(segments)
    widen_to_turns(segments, turns)
    if sounding is not None:
        trim_to_sound(segments, sounding)
    relabel_by_first_appearance(segments, keep)
    return segments


def merge_channels(channels: list[list[Segment]]) -> list[Segment]:
    """One speaker per channel (A = left, B = right), segments interleaved by start time."""
    merged: list[Segment] = []
    for index, segments in enumerate(channels):
        label = letter_label(index)
        for segment in segments:
            segment.speaker = label
            for word in segment.words:
                word.speaker = label
            merged.append(segment)
    merged.sort(key=lambda s: (s.start, s.end))
    for number, segment in enumerate(merged):
        segment.id = number
    return merged
