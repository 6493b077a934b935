"""Request and response models of the OpenAI-compatible API, in one place.

Response shapes follow the ``openai`` package's types (``Transcription``,
``TranscriptionVerbose``, ``TranscriptionDiarized``); the request mirrors
``audio.transcriptions.create``'s fields plus our extensions (diarization,
separation, speaker counts), each a plain multipart form field.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from faster_whisper.tokenizer import _LANGUAGE_CODES
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from speakerscribe.errors import InvalidRequestError

ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json", "diarized_json"]
TranslationFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
Granularity = Literal["segment", "word"]
Include = Literal["logprobs"]
WHISPER_1 = "whisper-1"
DEFAULT_MODEL = "default"
"""In ``model_aliases``: the default model, whatever its id."""
OPENAI_MODEL_IDS = (
    WHISPER_1,
    "gpt-4o-transcribe",
    "gpt-4o-mini-transcribe",
    "gpt-4o-transcribe-diarize",
)
"""OpenAI's transcription model ids: aliases of the default model unless configured."""

LIST_FIELDS = (
    "timestamp_granularities",
    "include",
    "known_speaker_names",
    "known_speaker_references",
)
"""Form fields that repeat (``include[]=…``); the others take their last value."""


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


def segment_granularity() -> list[Granularity]:
    """The default ``timestamp_granularities``: segments only."""
    return ["segment"]


class ServerVadChunking(BaseModel):
    """``chunking_strategy={"type": "server_vad", …}``: cut at the end of each utterance."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["server_vad"]
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="speech probability to open speech")
    prefix_padding_ms: int = Field(300, ge=0, le=10_000, description="audio kept around speech")
    silence_duration_ms: int = Field(
        200, ge=0, le=60_000, description="silence that ends an utterance"
    )


ChunkingStrategy = Literal["auto"] | ServerVadChunking


def parse_chunking_strategy(value: Any) -> Any:
    """``"auto"``, a server_vad object, or that object as JSON text (form fields are strings)."""
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"not valid JSON: {error.msg}") from None
    if value is None or isinstance(value, ServerVadChunking):
        return value
    if isinstance(value, str):
        if value.strip() == "auto":
            return "auto"
        raise ValueError(f"must be 'auto' or a server_vad object, not {value!r}")
    if isinstance(value, dict):
        try:
            return ServerVadChunking.model_validate(value)
        except ValidationError as error:
            item = error.errors()[0]
            where = ".".join(str(part) for part in item["loc"])
            raise ValueError(f"{where}: {item['msg']}") from None
    raise ValueError("must be 'auto' or a server_vad object")


def clean_speaker_names(names: list[str]) -> list[str]:
    """Enrolled names, stripped; ValueError for a blank or repeated one (uploads and live)."""
    names = [name.strip() for name in names]
    if any(not name for name in names):
        raise ValueError("speaker names must not be empty")
    if len(set(names)) != len(names):
        raise ValueError("speaker names must be unique")
    return names


def speaker_pairs_mismatch(names: list[str], references: list[str]) -> str | None:
    """What is wrong when names and reference clips do not pair up one-to-one."""
    if len(names) == len(references):
        return None
    return (
        f"known_speaker_names has {len(names)} entries but known_speaker_references "
        f"has {len(references)}; give one reference per name"
    )


class TranscriptionRequest(BaseModel):
    """The form of ``POST /v1/audio/transcriptions`` minus the file."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    language: str | None = None
    prompt: str | None = None
    response_format: ResponseFormat = "json"
    temperature: float = Field(0.0, ge=0.0, le=1.0)
    timestamp_granularities: list[Granularity] = Field(default_factory=segment_granularity)
    stream: bool = False
    enable_speaker_diarization: bool | None = None
    enable_vocal_separation: bool = False
    multichannel: bool = False
    num_speakers: int | None = Field(None, ge=1)
    min_speakers: int | None = Field(None, ge=1)
    max_speakers: int | None = Field(None, ge=1)
    include: list[Include] = Field(default_factory=list)
    chunking_strategy: ChunkingStrategy | None = None
    known_speaker_names: list[str] = Field(default_factory=list)
    known_speaker_references: list[str] = Field(
        default_factory=list,
        description="audio data URLs (data:audio/wav;base64,…), 2 to 10 s each",
    )
    enable_overlap_detection: bool = Field(
        False, description="flag words and segments where two speakers talk at once"
    )

    @field_validator("chunking_strategy", mode="before")
    @classmethod
    def _parse_chunking(cls, value: Any) -> Any:
        return parse_chunking_strategy(value)

    @field_validator("known_speaker_names")
    @classmethod
    def _speaker_names(cls, names: list[str]) -> list[str]:
        return clean_speaker_names(names)

    @model_validator(mode="after")
    def _known_speakers_pair_up(self) -> TranscriptionRequest:
        mismatch = speaker_pairs_mismatch(self.known_speaker_names, self.known_speaker_references)
        if mismatch:
            raise InvalidRequestError(mismatch, param="known_speaker_references")
        return self

    @model_validator(mode="after")
    def _logprobs_need_json(self) -> TranscriptionRequest:
        if "logprobs" in self.include and self.response_format != "json":
            raise InvalidRequestError(
                f"include[]=logprobs needs response_format json, not {self.response_format!r}",
                param="include",
            )
        return self

    @property
    def wants_logprobs(self) -> bool:
        return "logprobs" in self.include

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        return known_language(value)

    @field_validator("prompt", "model")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return blank_is_none(value)

    @model_validator(mode="after")
    def _speaker_bounds(self) -> TranscriptionRequest:
        if self.min_speakers and self.max_speakers and self.min_speakers > self.max_speakers:
            raise ValueError(
                f"min_speakers ({self.min_speakers}) is larger than max_speakers "
                f"({self.max_speakers})"
            )
        return self

    def wants_diarization(self, default: bool) -> bool:
        """Whether the diarizer runs. The server's default applies only where the answer
        shows speakers: a ``json`` or ``text`` answer (not streamed) has nowhere to put them,
        so it is diarized only when the client asks by name."""
        if self.response_format == "diarized_json" or self.known_speaker_names:
            return True
        if self.enable_overlap_detection:
            return True
        if self.enable_speaker_diarization is None:
            return default and self.shows_speakers
        return self.enable_speaker_diarization

    @property
    def shows_speakers(self) -> bool:
        return self.stream or self.response_format not in ("json", "text")

    def wants_words(self) -> bool:
        return "word" in self.timestamp_granularities

    @classmethod
    def from_form(cls, fields: dict[str, Any]) -> TranscriptionRequest:
        """Validate form fields; raise InvalidRequestError naming the first bad field."""
        try:
            return cls.model_validate(fields)
        except ValidationError as error:
            raise request_error(error) from None


class TranslationRequest(BaseModel):
    """The form of ``POST /v1/audio/translations`` minus the file: speech in any language
    to English text. Speaker labels are off unless asked for."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    prompt: str | None = None
    response_format: TranslationFormat = "json"
    temperature: float = Field(0.0, ge=0.0, le=1.0)
    chunking_strategy: ChunkingStrategy | None = None
    enable_speaker_diarization: bool = False
    enable_vocal_separation: bool = False
    num_speakers: int | None = Field(None, ge=1)
    min_speakers: int | None = Field(None, ge=1)
    max_speakers: int | None = Field(None, ge=1)

    @field_validator("chunking_strategy", mode="before")
    @classmethod
    def _parse_chunking(cls, value: Any) -> Any:
        return parse_chunking_strategy(value)

    @field_validator("prompt", "model")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return blank_is_none(value)

    def as_transcription(self) -> TranscriptionRequest:
        """The same work as a transcription request; the service runs it with task=translate."""
        return TranscriptionRequest.from_form(self.model_dump())

    @classmethod
    def from_form(cls, fields: dict[str, Any]) -> TranslationRequest:
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


class LogprobOut(BaseModel):
    token: str
    bytes: list[int]
    logprob: float


class TranscriptionJson(BaseModel):
    text: str
    logprobs: list[LogprobOut] | None = None
    usage: UsageDuration


class WordOut(BaseModel):
    word: str
    start: float
    end: float
    speaker: str | None = None
    overlap: bool | None = None


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
    overlap: bool | None = None


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
    overlap: bool | None = None


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
