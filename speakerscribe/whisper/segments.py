"""Tidying the segments of one piece across decoding passes: times shifted by a pass's
offset, a tail that rereads what was said, word starts that go back, a repetition loop,
and words aligned away from their own timestamps."""

from __future__ import annotations

import re

from faster_whisper.transcribe import get_compression_ratio

from speakerscribe.types import Segment


def is_reread(before: list[Segment], segment: Segment) -> bool:
    """``segment`` repeats the last words of ``before``, over audio they already cover.

    Whisper's stop is a timestamp, often on a whole second with tiny.en: on sample.wav it
    stopped at "… New Jersey now.<|29.00|>" (the last word ends at 29.88 s), and the tail
    from 29 s read "New Jersey now." again.
    """
    words = plain_words(segment.text)
    said = plain_words(" ".join(s.text for s in before))
    return bool(words) and said[-len(words) :] == words and segment.start <= before[-1].end


REREAD_SLACK_S = 0.2
"""A reread word starts at most this long after the text before it ends (word times are
20 ms frames, and the tail's first word can align a little late)."""


def drop_reread_words(before: list[Segment], segment: Segment) -> None:
    """Drop the first words of ``segment`` that read again the last words of ``before``
    over audio they already cover, in place: a tail from 28.5 s on sample.wav read
    "thing? I don't hear that…" after a pass that ended on "kind of thing?"."""
    if not before or not segment.words or segment.start > before[-1].end:
        return
    said = plain_words(" ".join(s.text for s in before))
    heads = [plain_words(word.word) for word in segment.words]
    for count in range(len(heads) - 1, 0, -1):
        repeated = [w for head in heads[:count] for w in head]
        over_said_audio = segment.words[count - 1].start <= before[-1].end + REREAD_SLACK_S
        if repeated and over_said_audio and said[-len(repeated) :] == repeated:
            segment.words = segment.words[count:]
            segment.start = segment.words[0].start
            segment.text = "".join(word.word for word in segment.words)
            segment.tokens = []  # tokens belong to the text as Whisper read it
            return


ALIGNMENT_SLACK_S = 1.0
"""Aligned words this close to their segment's timestamps are kept: tiny.en's timestamps
often fall on whole seconds ("Right." at 5.78 s in a segment timed 4.76 s to 5.76 s)."""


def cut_repetition_loop(
    segments: list[dict], compression_ratio_threshold: float
) -> tuple[list[dict], float | None]:
    """A window's segments up to the first copy of a segment Whisper then reads again and
    again, and where to decode again from (the end of that copy), or ``None``.

    Whisper's sign of a failed decode is a text that compresses too well (its
    ``compression_ratio_threshold``); on EN2002a_30s tiny.en read "It opens a menu." 18
    times, a second each, from 10 s to the window's end, over three people talking.
    """
    text = "".join(segment["text"] for segment in segments)
    if not text.strip() or get_compression_ratio(text) <= compression_ratio_threshold:
        return segments, None
    for index in range(1, len(segments)):
        if plain_words(segments[index]["text"]) == plain_words(segments[index - 1]["text"]):
            return segments[:index], float(segments[index - 1]["end"])
    return segments, None


def hold_words_to_timestamps(segment: dict, start: float, end: float) -> None:
    """Words that alignment put wholly outside the span Whisper's own timestamps give the
    segment (``start`` to ``end``) are spread over that span by length instead, in place.

    On libri_9spk (a piece from 101.6 s) Whisper read "<|0.00|> He should notice … the
    condition of<|4.48|>", and the cross-attention alignment put those words at 19.4 s to
    22.4 s, over the next speakers' turns; every later word of the piece then sat at 22.4 s.
    """
    words = segment.get("words") or []
    if not words or end <= start:
        return
    if words[0]["start"] < end + ALIGNMENT_SLACK_S and words[-1]["end"] > start - ALIGNMENT_SLACK_S:
        return  # inside, if only in part: the timestamps are coarse (a piece's first is 0.00)
    lengths = [max(len(word["word"].strip()), 1) for word in words]
    at, per_character = start, (end - start) / sum(lengths)
    for word, length in zip(words, lengths, strict=True):
        word["start"], word["end"] = at, at + length * per_character
        at = word["end"]
    segment["start"], segment["end"] = start, end


def keep_word_order(segments: list[Segment]) -> None:
    """Word starts never go back: a tail's first word can align a frame before the last
    word of the pass before it."""
    floor = 0.0
    for segment in segments:
        for word in segment.words:
            word.start = max(word.start, floor)
            word.end = max(word.end, word.start)
            floor = word.start


def plain_words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def shift_segment(segment: Segment, offset: float) -> None:
    if offset:
        segment.start = round(segment.start + offset, 3)
        segment.end = round(segment.end + offset, 3)
        for word in segment.words:
            word.start = round(word.start + offset, 3)
            word.end = round(word.end + offset, 3)
