"""Code written for OpenAI runs unchanged: each OpenAI model id, in every response format that
OpenAI allows for it, through the official client."""

from __future__ import annotations

import base64

import pytest
import srt
import webvtt
from openai.types.audio import (
    Transcription,
    TranscriptionDiarized,
    TranscriptionVerbose,
)

from tools.scoring import word_error_rate as wer

pytestmark = pytest.mark.e2e

# What OpenAI's API reference allows per model (the `openai` package's `response_format`).
ALLOWED_FORMATS = {
    "whisper-1": ["json", "text", "srt", "verbose_json", "vtt"],
    "gpt-4o-transcribe": ["json"],
    "gpt-4o-mini-transcribe": ["json"],
    "gpt-4o-transcribe-diarize": ["json", "text", "diarized_json"],
}
CASES = [(model, fmt) for model, formats in ALLOWED_FORMATS.items() for fmt in formats]


@pytest.fixture(scope="module")
def jfk(testdata) -> tuple[bytes, str]:
    return (
        (testdata / "faster-whisper/jfk.flac").read_bytes(),
        (testdata / "faster-whisper/jfk.txt").read_text(),
    )


@pytest.mark.parametrize("model,response_format", CASES)
def test_each_openai_model_id_in_each_of_its_formats(client, jfk, model, response_format):
    audio, reference = jfk
    extra = {"chunking_strategy": "auto"} if model == "gpt-4o-transcribe-diarize" else {}
    result = client.audio.transcriptions.create(
        model=model, file=("jfk.flac", audio), response_format=response_format, **extra
    )
    if response_format == "json":
        assert isinstance(result, Transcription)
        text = result.text
    elif response_format == "verbose_json":
        assert isinstance(result, TranscriptionVerbose) and result.language == "english"
        assert result.segments and result.duration == pytest.approx(11.0, abs=0.1)
        text = result.text
    elif response_format == "diarized_json":
        assert isinstance(result, TranscriptionDiarized)
        assert result.segments and {s.speaker for s in result.segments} == {"A"}
        text = result.text
    elif response_format == "srt":
        text = " ".join(cue.content for cue in srt.parse(result))
    elif response_format == "vtt":
        text = " ".join(cue.text for cue in webvtt.from_string(result))
    else:
        assert isinstance(result, str)
        text = result
    assert wer(reference, text) <= 0.15, (model, response_format, text)


@pytest.mark.parametrize("model", ["gpt-4o-transcribe", "gpt-4o-mini-transcribe"])
def test_streaming_models_stream(client, jfk, model):
    audio, reference = jfk
    events = list(
        client.audio.transcriptions.create(model=model, file=("jfk.flac", audio), stream=True)
    )
    assert events[-1].type == "transcript.text.done"
    assert any(e.type == "transcript.text.delta" for e in events)
    assert wer(reference, events[-1].text) <= 0.15


def test_diarize_model_streams_segments_with_speakers(client, testdata):
    with open(testdata / "pyannote/sample.wav", "rb") as audio:
        events = list(
            client.audio.transcriptions.create(
                model="gpt-4o-transcribe-diarize",
                file=audio,
                response_format="diarized_json",
                stream=True,
            )
        )
    segments = [e for e in events if e.type == "transcript.text.segment"]
    assert segments and {e.speaker for e in segments} >= {"A", "B"}
    assert events[-1].type == "transcript.text.done"


def test_diarize_model_names_known_speakers(client, testdata):
    def data_url(name: str) -> str:
        data = (testdata / f"speechbrain/{name}.wav").read_bytes()
        return "data:audio/wav;base64," + base64.b64encode(data).decode()

    with open(testdata / "speechbrain/spk1_snt2.wav", "rb") as audio:
        result = client.audio.transcriptions.create(
            model="gpt-4o-transcribe-diarize",
            file=audio,
            response_format="diarized_json",
            known_speaker_names=["alice", "bob"],
            known_speaker_references=[data_url("spk1_snt1"), data_url("spk2_snt1")],
        )
    assert result.segments and {s.speaker for s in result.segments} == {"alice"}


def test_every_openai_model_id_is_listed(client):
    listed = {model.id for model in client.models.list().data}
    assert set(ALLOWED_FORMATS) <= listed
    for model in ALLOWED_FORMATS:
        assert client.models.retrieve(model).id == model
