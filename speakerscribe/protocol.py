"""Request and response models of the OpenAI-compatible API, in one place.

Response shapes follow the ``openai`` package's types (``Transcription``,
``TranscriptionVerbose``, ``TranscriptionDiarized``); the request mirrors
``audio.transcriptions.create``'s fields plus our extensions (diarization,
separation, speaker counts), each a plain multipart form field.
"""

from __future__ import annotations

from typing import Any, Literal

from faster_whisper.tokenizer import _LANGUAGE_CODES
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from speakerscribe.errors import InvalidRequestError

ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json", "diarized_json"]
Granularity = Literal["segment", "word"]
WHISPER_1 = "whisper-1"
"""OpenAI's model name, accepted as an alias of the default model."""

LIST_FIELDS = ("timestamp_granularities",)


def known_language(value: str | None) -> str | None:
    """An ISO-639-1 code Whisper knows, lower-cased; empty means detect."""
    if not value:
        return None
    code = value.strip().lower()
    if code not in _LANGUAGE_CODES:
        raise ValueError(f"unknown language code {value!r}; use an ISO-639-1 code such as 'en'")
    return code


def blank_is_none(value: str | None) -> str | None:
    return value if value and value.strip() else None


class TranscriptionRequest(BaseModel):
    """The form of ``POST /v1/audio/transcriptions`` minus the file."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    language: str | None = None
    prompt: str | None = None
    response_format: ResponseFormat = "json"
    temperature: float = Field(0.0, ge=0.0, le=1.0)
    timestamp_granularities: list[Granularity] = Field(default_factory=lambda: ["segment"])
    stream: bool = False
    enable_speaker_diarization: bool | None = None
    enable_vocal_separation: bool = False
    multichannel: bool = False
    num_speakers: int | None = Field(None, ge=1)
    min_speakers: int | None = Field(None, ge=1)
    max_speakers: int | None = Field(None, ge=1)

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        return known_language(value)

    @field_validator("prompt", "model")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return blank_is_none(value)

    @model_validator(mode="after")
    def _speaker_bounds(self) -> "TranscriptionRequest":
        if self.min_speakers and self.max_speakers and self.min_speakers > self.max_speakers:
            raise ValueError(
                f"min_speakers ({self.min_speakers}) is larger than max_speakers ({self.max_speakers})"
            )
        return self

    def wants_diarization(self, default: bool) -> bool:
        if self.response_format == "diarized_json":
            return True
        if self.enable_speaker_diarization is None:
            return default
        return self.enable_speaker_diarization

    def wants_words(self) -> bool:
        return "word" in self.timestamp_granularities

    @classmethod
    def from_form(cls, fields: dict[str, Any]) -> "TranscriptionRequest":
        """Validate form fields; raise InvalidRequestError naming the first bad field."""
        try:
            return cls.model_validate(fields)
        except ValidationError as error:
            raise request_error(error) from None


def request_error(error: ValidationError) -> InvalidRequestError:
    item = error.errors()[0]
    param = ".".join(str(part) for part in item["loc"] if not isinstance(part, int)) or None
    message = item["msg"].removeprefix("Value error, ")
    if item["type"] == "extra_forbidden":
        message = f"unknown parameter {param!r}"
    elif item["type"] == "literal_error" and param:
        message = f"invalid {param}: {message}"
    elif param:
        message = f"{param}: {message}"
    return InvalidRequestError(message, param=param)


# --- responses (shapes of openai.types.audio) -------------------------------------------


class UsageDuration(BaseModel):
    type: Literal["duration"] = "duration"
    seconds: float


class TranscriptionJson(BaseModel):
    text: str
    usage: UsageDuration


class WordOut(BaseModel):
    word: str
    start: float
    end: float
    speaker: str | None = None


class SegmentOut(BaseModel):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    speaker: str | None = None


class TranscriptionVerboseJson(BaseModel):
    task: Literal["transcribe", "translate"] = "transcribe"
    language: str
    duration: float
    text: str
    segments: list[SegmentOut] | None = None
    words: list[WordOut] | None = None
    usage: UsageDuration


class DiarizedSegmentOut(BaseModel):
    type: Literal["transcript.text.segment"] = "transcript.text.segment"
    id: str
    start: float
    end: float
    text: str
    speaker: str


class TranscriptionDiarizedJson(BaseModel):
    task: Literal["transcribe"] = "transcribe"
    duration: float
    text: str
    segments: list[DiarizedSegmentOut]
    usage: UsageDuration


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "speakerscribe"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
