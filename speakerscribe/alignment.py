"""Words to speakers: who said each word, and segments split where the speaker changes.

Each word takes the speaker whose turns overlap it most (the nearest turn when none
overlaps, e.g. a word the diarizer heard as silence). Segments are then re-cut at
every change of speaker, and labels become A, B, C… in order of first appearance,
as OpenAI's diarizing model names them.
"""

from __future__ import annotations

import bisect
import string
from collections import defaultdict
from collections.abc import Set

from speakerscribe.types import Segment, SpeakerTurn, Word


def speaker_for_span(start: float, end: float, turns: list[SpeakerTurn]) -> str | None:
    """The speaker with the most overlap with ``[start, end]``, else the nearest turn's."""
    if not turns:
        return None
    overlap: dict[str, float] = defaultdict(float)
    for turn in turns:
        shared = min(end, turn.end) - max(start, turn.start)
        if shared > 0:
            overlap[turn.speaker] += shared
    if overlap:
        return max(overlap.items(), key=lambda item: item[1])[0]
    middle = (start + end) / 2
    nearest = min(turns, key=lambda t: _distance(middle, t))
    return nearest.speaker


def _distance(t: float, turn: SpeakerTurn) -> float:
    if turn.start <= t <= turn.end:
        return 0.0
    return min(abs(turn.start - t), abs(turn.end - t))


class _TurnIndex:
    """Turns sorted by start, so a word looks only at turns that can reach it."""

    def __init__(self, turns: list[SpeakerTurn]):
        self.turns = sorted(turns, key=lambda t: t.start)
        self.starts = [t.start for t in self.turns]
        self.longest = max((t.end - t.start for t in self.turns), default=0.0)

    def near(self, start: float, end: float, margin: float = 5.0) -> list[SpeakerTurn]:
        lo = bisect.bisect_left(self.starts, start - self.longest - margin)
        hi = bisect.bisect_right(self.starts, end + margin)
        return self.turns[lo:hi] or self.turns


def assign_speakers(segments: list[Segment], turns: list[SpeakerTurn]) -> None:
    """Set ``speaker`` on every word (and on word-less segments) in place."""
    if not turns:
        return
    index = _TurnIndex(turns)
    for segment in segments:
        for word in segment.words:
            word.speaker = speaker_for_span(word.start, word.end, index.near(word.start, word.end))
        if not segment.words:
            segment.speaker = speaker_for_span(
                segment.start, segment.end, index.near(segment.start, segment.end)
            )


def split_at_speaker_changes(segments: list[Segment]) -> list[Segment]:
    """One segment per run of words by the same speaker; ids renumbered."""
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
                )
            )
    for number, segment in enumerate(result):
        segment.id = number
    return result


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


def attribute_speakers(
    segments: list[Segment], turns: list[SpeakerTurn], keep: Set[str] = frozenset()
) -> list[Segment]:
    """The whole step: assign, split at changes, relabel A, B, C… (names in ``keep`` stay)."""
    assign_speakers(segments, turns)
    segments = split_at_speaker_changes(segments)
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
