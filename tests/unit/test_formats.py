"""Every formatter against the openai package's types and real subtitle parsers."""

from __future__ import annotations

import io
import typing

import pytest
import srt
import webvtt
from openai.types.audio import Transcription, TranscriptionDiarized, TranscriptionVerbose

from speakerscribe.formats import FORMATTERS, TranscriptionResult, render
from speakerscribe.protocol import ResponseFormat, TranslationFormat
from speakerscribe.types import Segment, Word


def result(diarized: bool = True) -> TranscriptionResult:
    return TranscriptionResult(
        duration=3725.5,
        language="en",
        diarized=diarized,
        segments=[
            Segment(
                0,
                0,
                0.0,
                1.5,
                " Hello there.",
                tokens=[1, 2],
                words=[
                    Word(" Hello", 0.0, 0.5, speaker="A"),
                    Word(" there.", 0.6, 1.5, speaker="A"),
                ],
                speaker="A",
            ),
            Segment(
                1,
                0,
                3723.25,
                3725.0,
                " Bye, now.",
                tokens=[3],
                words=[
                    Word(" Bye,", 3723.25, 3724.0, speaker="B"),
                    Word(" now.", 3724.1, 3725.0, speaker="B"),
                ],
                speaker="B",
            ),
        ],
    )


def test_json():
    body, media = render(result(), "json")
    parsed = Transcription.model_validate(body)
    assert parsed.text == "Hello there. Bye, now." and parsed.usage.seconds == 3725.5
    assert media == "application/json" and set(body) == {"text", "usage"}


def test_text():
    body, media = render(result(), "text")
    assert body == "Hello there. Bye, now.\n" and media == "text/plain"


def test_srt_with_speakers_and_hours():
    body, _ = render(result(), "srt")
    cues = list(srt.parse(body))
    assert [c.content for c in cues] == ["A: Hello there.", "B: Bye, now."]
    assert cues[1].start.total_seconds() == pytest.approx(3723.25)
    assert "01:02:03,250 --> 01:02:05,000" in body


def test_vtt_with_voice_spans():
    body, media = render(result(), "vtt")
    cues = list(webvtt.from_buffer(io.StringIO(body)))
    assert [(c.voice, c.text) for c in cues] == [("A", "Hello there."), ("B", "Bye, now.")]
    assert cues[1].start == "01:02:03.250" and media == "text/vtt"


def test_srt_and_vtt_round_sub_millisecond_times_alike():
    timed = result()
    timed.segments[0].start, timed.segments[0].end = 14.7456, 28.5667
    srt_cue = next(srt.parse(render(timed, "srt")[0]))
    vtt_cue = next(iter(webvtt.from_buffer(io.StringIO(render(timed, "vtt")[0]))))
    assert (vtt_cue.start, vtt_cue.end) == ("00:00:14.746", "00:00:28.567")
    assert (srt_cue.start.total_seconds(), srt_cue.end.total_seconds()) == (14.746, 28.567)


def test_plain_subtitles_without_diarization():
    body, _ = render(result(diarized=False), "srt")
    assert [c.content for c in srt.parse(body)] == ["Hello there.", "Bye, now."]
    body, _ = render(result(diarized=False), "vtt")
    assert [c.voice for c in webvtt.from_buffer(io.StringIO(body))] == [None, None]


def test_empty_transcript_formats():
    empty = TranscriptionResult(duration=600.0, language="en", segments=[])
    assert render(empty, "json")[0]["text"] == ""
    assert list(srt.parse(render(empty, "srt")[0])) == []
    assert list(webvtt.from_buffer(io.StringIO(render(empty, "vtt")[0]))) == []


def test_verbose_json_shapes():
    body, _ = render(result(), "verbose_json", ["segment", "word"])
    parsed = TranscriptionVerbose.model_validate(body)
    assert parsed.language == "english" and parsed.duration == 3725.5
    assert [w.word for w in parsed.words] == ["Hello", "there.", "Bye,", "now."]
    assert body["task"] == "transcribe"
    assert [s["speaker"] for s in body["segments"]] == ["A", "B"]
    assert {w["speaker"] for w in body["words"]} == {"A", "B"}
    segment_keys = {
        "id",
        "seek",
        "start",
        "end",
        "text",
        "tokens",
        "temperature",
        "avg_logprob",
        "compression_ratio",
        "no_speech_prob",
        "speaker",
    }
    assert set(body["segments"][0]) == segment_keys


def test_verbose_json_without_diarization_has_no_speaker_keys():
    body, _ = render(result(diarized=False), "verbose_json", ["segment"])
    assert "speaker" not in body["segments"][0] and body["words"] is None


def test_diarized_json_shapes():
    body, _ = render(result(), "diarized_json")
    parsed = TranscriptionDiarized.model_validate(body)
    assert [(s.id, s.speaker, s.text, s.type) for s in parsed.segments] == [
        ("seg_0", "A", "Hello there.", "transcript.text.segment"),
        ("seg_1", "B", "Bye, now.", "transcript.text.segment"),
    ]
    assert parsed.task == "transcribe" and parsed.usage.type == "duration"


def test_every_format_a_request_may_name_has_a_writer():
    """Adding a format is one writer in ``FORMATTERS`` plus its name in ``ResponseFormat``."""
    assert set(FORMATTERS) == set(typing.get_args(ResponseFormat))
    assert set(typing.get_args(TranslationFormat)) <= set(FORMATTERS)
    with pytest.raises(ValueError, match="unknown response_format"):
        render(TranscriptionResult(duration=1.0, language="en", segments=[]), "tsv")  # type: ignore[arg-type]
