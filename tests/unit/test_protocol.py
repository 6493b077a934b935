"""Request validation: OpenAI's fields and our extensions, errors that name the field."""

from __future__ import annotations

import pytest

from speakerscribe.errors import InvalidRequestError
from speakerscribe.protocol import TranscriptionRequest


def test_defaults_and_coercion_from_form_strings():
    request = TranscriptionRequest.from_form(
        {
            "temperature": "0.2",
            "timestamp_granularities": ["word", "segment"],
            "num_speakers": "2",
            "enable_speaker_diarization": "false",
            "language": "EN",
        }
    )
    assert request.temperature == 0.2 and request.num_speakers == 2
    assert request.enable_speaker_diarization is False and request.language == "en"
    assert request.wants_words() and not request.wants_diarization(default=True)
    assert TranscriptionRequest.from_form({"response_format": "diarized_json"}).wants_diarization(
        False
    )


@pytest.mark.parametrize(
    "fields,param",
    [
        ({"response_format": "docx"}, "response_format"),
        ({"temperature": "1.5"}, "temperature"),
        ({"temperature": "warm"}, "temperature"),
        ({"language": "klingon"}, "language"),
        ({"num_speakers": "0"}, "num_speakers"),
        ({"timestamp_granularities": ["sentence"]}, "timestamp_granularities"),
        ({"frobnicate": "1"}, "frobnicate"),
        ({"min_speakers": "3", "max_speakers": "2"}, None),
    ],
)
def test_bad_fields_name_the_param(fields, param):
    with pytest.raises(InvalidRequestError) as raised:
        TranscriptionRequest.from_form(fields)
    assert raised.value.status_code == 400
    assert raised.value.param == param
    body = raised.value.to_openai()["error"]
    assert body["type"] == "invalid_request_error" and body["message"]
