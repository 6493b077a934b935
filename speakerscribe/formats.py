"""Render a finished transcription in each of OpenAI's response formats.

SRT is composed with the ``srt`` library and WebVTT with ``webvtt-py``; speaker
labels go in as ``A: …`` (SRT) and ``<v A>…`` voice spans (WebVTT), the
conventions players and OpenAI's diarizing model use.
"""

from __future__ import annotations

import datetime as dt
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import srt
import webvtt

from speakerscribe.languages import language_name
from speakerscribe.protocol import (
    DiarizedSegmentOut,
    LogprobOut,
    ResponseFormat,
    SegmentOut,
    TranscriptionDiarizedJson,
    TranscriptionJson,
    TranscriptionVerboseJson,
    UsageDuration,
    WordOut,
)
from speakerscribe.types import Segment


@dataclass(slots=True)
class TranscriptionResult:
    """Everything a formatter needs; built by the ingress after merging all stages."""

    duration: float
    language: str
    segments: list[Segment]
    task: Literal["transcribe", "translate"] = "transcribe"
    diarized: bool = False
    stage_seconds: dict[str, float] = field(default_factory=dict)
    logprobs: bool = False
    """Token log probabilities were asked for (json answers carry them)."""
    overlap: bool = False
    """Overlap detection was asked for (words and segments carry an ``overlap`` flag)."""
    identified: dict[str, float] = field(default_factory=dict)
    """Enrolled speaker name → similarity of the voice that took it."""

    @property
    def text(self) -> str:
        return "".join(segment.text for segment in self.segments).strip()


def _usage(result: TranscriptionResult) -> UsageDuration:
    return UsageDuration(seconds=result.duration)


def logprobs_out(segments: list[Segment]) -> list[dict]:
    """OpenAI's ``logprobs`` list: one entry per text token, in order."""
    return [
        LogprobOut(token=token, bytes=list(token.encode("utf-8")), logprob=logprob).model_dump()
        for segment in segments
        for token, logprob in (segment.logprobs or [])
    ]


def to_json(result: TranscriptionResult) -> dict:
    logprobs = logprobs_out(result.segments) if result.logprobs else None
    # pydantic validates the plain dicts into LogprobOut models
    return TranscriptionJson(
        text=result.text, logprobs=cast("list[LogprobOut] | None", logprobs), usage=_usage(result)
    ).model_dump(exclude_none=True)


def to_verbose_json(result: TranscriptionResult, granularities=("segment",)) -> dict:
    with_speaker = result.diarized
    segments = None
    words = None
    if "segment" in granularities:
        segments = [
            SegmentOut(
                id=s.id,
                seek=s.seek,
                start=s.start,
                end=s.end,
                text=s.text,
                tokens=s.tokens,
                temperature=s.temperature,
                avg_logprob=s.avg_logprob,
                compression_ratio=s.compression_ratio,
                no_speech_prob=s.no_speech_prob,
                speaker=s.speaker if with_speaker else None,
                overlap=s.overlap if result.overlap else None,
            )
            for s in result.segments
        ]
    if "word" in granularities:
        words = [
            WordOut(
                word=w.word.strip(),
                start=w.start,
                end=w.end,
                speaker=w.speaker if with_speaker else None,
                overlap=w.overlap if result.overlap else None,
            )
            for s in result.segments
            for w in s.words
        ]
    body = TranscriptionVerboseJson(
        task=result.task,
        language=language_name(result.language),  # OpenAI's form: "english", not "en"
        duration=result.duration,
        text=result.text,
        segments=segments,
        words=words,
        usage=_usage(result),
    )
    hidden = {
        name
        for name, shown in (("speaker", with_speaker), ("overlap", result.overlap))
        if not shown
    }
    exclude: dict[str, Any] | None = (
        {"segments": {"__all__": hidden}, "words": {"__all__": hidden}} if hidden else None
    )
    if result.task == "translate":  # OpenAI's TranslationVerbose: the output language, no words
        body.language = language_name("en")
        exclude = {**(exclude or {}), "words": True}
    return body.model_dump(exclude=exclude, exclude_none=False)


def to_diarized_json(result: TranscriptionResult) -> dict:
    return TranscriptionDiarizedJson(
        duration=result.duration,
        text=result.text,
        segments=[
            DiarizedSegmentOut(
                id=f"seg_{s.id}",
                start=s.start,
                end=s.end,
                text=s.text.strip(),
                speaker=s.speaker or "A",
                overlap=s.overlap if result.overlap else None,
            )
            for s in result.segments
        ],
        usage=_usage(result),
    ).model_dump(exclude=None if result.overlap else {"segments": {"__all__": {"overlap"}}})


def _cue_text(segment: Segment, diarized: bool, voice_span: bool) -> str:
    text = segment.text.strip()
    if not diarized or not segment.speaker:
        return text
    return f"<v {segment.speaker}>{text}" if voice_span else f"{segment.speaker}: {text}"


def to_srt(result: TranscriptionResult) -> str:
    subtitles = [
        srt.Subtitle(
            index=number,
            start=dt.timedelta(milliseconds=_cue_millis(s.start)),
            end=dt.timedelta(milliseconds=_cue_millis(max(s.end, s.start))),
            content=_cue_text(s, result.diarized, voice_span=False),
        )
        for number, s in enumerate(result.segments, start=1)
    ]
    return srt.compose(subtitles, reindex=False)


def to_vtt(result: TranscriptionResult) -> str:
    captions = webvtt.WebVTT()
    for s in result.segments:
        captions.captions.append(
            webvtt.Caption(
                start=_vtt_time(s.start),
                end=_vtt_time(max(s.end, s.start)),
                text=_cue_text(s, result.diarized, voice_span=True),
            )
        )
    buffer = io.StringIO()
    captions.write(buffer)
    return buffer.getvalue() if captions.captions else "WEBVTT\n"


def _cue_millis(seconds: float) -> int:
    """Cue times rounded half up to the millisecond, so SRT (which would truncate) and VTT
    agree with each other and with the page's own writers (JavaScript's Math.round)."""
    return math.floor(seconds * 1000 + 0.5)


def _vtt_time(seconds: float) -> str:
    millis = _cue_millis(seconds)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


@dataclass(frozen=True, slots=True)
class ResponseFormatter:
    """One response format: how a result is written in it, and its media type."""

    write: Callable[[TranscriptionResult, Sequence[str]], dict | str]
    media_type: str


FORMATTERS: dict[str, ResponseFormatter] = {
    "json": ResponseFormatter(lambda r, _: to_json(r), "application/json"),
    "verbose_json": ResponseFormatter(to_verbose_json, "application/json"),
    "diarized_json": ResponseFormatter(lambda r, _: to_diarized_json(r), "application/json"),
    "text": ResponseFormatter(lambda r, _: r.text + "\n", "text/plain"),
    "srt": ResponseFormatter(lambda r, _: to_srt(r), "text/plain"),
    "vtt": ResponseFormatter(lambda r, _: to_vtt(r), "text/vtt"),
}
"""Every ``response_format`` a request may name (``protocol.ResponseFormat``) → its writer."""


def render(
    result: TranscriptionResult,
    response_format: ResponseFormat,
    granularities: Sequence[str] = ("segment",),
) -> tuple[dict | str, str]:
    """Body (a dict for JSON formats, text otherwise) and its media type."""
    formatter = FORMATTERS.get(response_format)
    if formatter is None:
        raise ValueError(f"unknown response_format {response_format!r}")
    return formatter.write(result, granularities), formatter.media_type
