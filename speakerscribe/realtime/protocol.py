"""The Realtime transcription protocol: session settings and client-event parsing.

What a client may set (``RealtimeSessionConfig``), how OpenAI's GA and beta shapes map
onto it (``session_changes``), and the errors a client event can earn. No audio, no models.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from speakerscribe.protocol import blank_is_none, known_language

OPENAI_INPUT_RATE = 24_000
"""OpenAI's only PCM rate; other rates are our extension (see ``RealtimeSessionConfig``)."""
MIN_COMMIT_MS = 100
"""OpenAI refuses to commit less than 100 ms of audio."""
MAX_PREFIX_PADDING_MS = 5_000
MAX_SILENCE_DURATION_MS = 10_000


class ServerVad(BaseModel):
    """OpenAI's ``server_vad`` turn detection, decided by Silero VAD."""

    model_config = ConfigDict(extra="ignore")  # create_response, idle_timeout_ms: no meaning here

    type: Literal["server_vad"] = "server_vad"
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    prefix_padding_ms: int = Field(default=300, ge=0, le=MAX_PREFIX_PADDING_MS)
    silence_duration_ms: int = Field(default=500, ge=0, le=MAX_SILENCE_DURATION_MS)


class RealtimeSessionConfig(BaseModel):
    """What a client can set with ``session.update``, flattened from OpenAI's nesting."""

    model_config = ConfigDict(extra="forbid")

    input_rate: int = Field(default=OPENAI_INPUT_RATE, ge=8_000, le=96_000)
    model: str | None = None
    language: str | None = None
    prompt: str | None = None
    turn_detection: ServerVad | None = Field(default_factory=ServerVad)
    enable_speaker_diarization: bool = False
    include: list[Literal["item.input_audio_transcription.logprobs"]] | None = None
    # enrolled voices, as for uploads: names and audio data URLs, one-to-one
    known_speaker_names: list[str] = Field(default_factory=list)
    known_speaker_references: list[str] = Field(default_factory=list, repr=False)

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        return known_language(value)

    @field_validator("model", "prompt")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return blank_is_none(value)

    def to_openai(self, session_id: str, model: str | None) -> dict[str, Any]:
        """The ``session`` object of ``session.created``/``session.updated`` (GA shape)."""
        turn_detection = self.turn_detection.model_dump() if self.turn_detection else None
        return {
            "type": "transcription",
            "id": session_id,
            "object": "realtime.transcription_session",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": self.input_rate},
                    "noise_reduction": None,
                    "transcription": {
                        "model": model,
                        "language": self.language,
                        "prompt": self.prompt or "",
                    },
                    "turn_detection": turn_detection,
                }
            },
            "include": self.include,
            "enable_speaker_diarization": self.enable_speaker_diarization,
            "known_speaker_names": self.known_speaker_names,  # the references are not echoed
        }


CONFIG_PARAMS = {
    "input_rate": "session.audio.input.format.rate",
    "model": "session.audio.input.transcription.model",
    "language": "session.audio.input.transcription.language",
    "prompt": "session.audio.input.transcription.prompt",
    "turn_detection": "session.audio.input.turn_detection",
    "enable_speaker_diarization": "session.enable_speaker_diarization",
    "include": "session.include",
    "known_speaker_names": "session.known_speaker_names",
    "known_speaker_references": "session.known_speaker_references",
}
"""Our flat config field → where the client put it, for error ``param``s."""


class ClientEventError(Exception):
    """A client event we cannot honour; becomes an ``error`` server event."""

    def __init__(self, message: str, *, code: str = "invalid_value", param: str | None = None):
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


def session_changes(session: Any) -> dict[str, Any]:
    """The fields a ``session.update`` (GA nesting) or ``transcription_session.update``
    (beta flat shape) sets; absent keys keep their value, explicit ``null`` clears."""
    if not isinstance(session, dict):
        raise ClientEventError("session must be an object", param="session")
    if session.get("type", "transcription") != "transcription":
        raise ClientEventError(
            "only transcription sessions are served here; set session.type to 'transcription'",
            param="session.type",
        )
    changes: dict[str, Any] = {}
    audio = _object(session.get("audio"), "session.audio")
    audio_input = _object(audio.get("input"), "session.audio.input")
    if "format" in audio_input:
        changes["input_rate"] = _rate_of_format(audio_input["format"])
    if "input_audio_format" in session:  # beta
        if session["input_audio_format"] not in (None, "pcm16"):
            raise ClientEventError(
                f"unsupported input_audio_format {session['input_audio_format']!r}; use 'pcm16'",
                param="session.input_audio_format",
            )
        changes["input_rate"] = OPENAI_INPUT_RATE
    for source, key, where in (
        (audio_input, "transcription", "session.audio.input"),
        (session, "input_audio_transcription", "session"),  # beta
    ):
        transcription = _object(source.get(key), f"{where}.{key}")
        for name in ("model", "language", "prompt"):
            if name in transcription:
                changes[name] = transcription[name]
        if "turn_detection" in source:
            changes["turn_detection"] = _turn_detection(source["turn_detection"])
    for name in (
        "include",
        "enable_speaker_diarization",
        "known_speaker_names",
        "known_speaker_references",
    ):
        if name in session:
            changes[name] = session[name] if session[name] is not None else []
    if "known_speaker_names" in changes or "known_speaker_references" in changes:
        changes.setdefault("known_speaker_names", [])
        changes.setdefault("known_speaker_references", [])
    return changes


def _object(value: Any, param: str) -> dict:
    """A nested settings object; null means 'nothing to change here'."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ClientEventError(f"{param} must be an object", param=param)
    return value


def _rate_of_format(audio_format: Any) -> Any:
    audio_format = _object(audio_format, "session.audio.input.format")
    kind = audio_format.get("type", "audio/pcm")
    if kind != "audio/pcm":
        raise ClientEventError(
            f"unsupported audio format {kind!r}; only 'audio/pcm' (PCM16 little-endian mono)",
            param="session.audio.input.format.type",
        )
    return audio_format.get("rate", OPENAI_INPUT_RATE)


def _turn_detection(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, dict) and value.get("type", "server_vad") != "server_vad":
        raise ClientEventError(
            f"turn_detection type {value.get('type')!r} is not supported; use 'server_vad' or null",
            param="session.audio.input.turn_detection.type",
        )
    return value


def _decode_audio_field(event: dict) -> bytes:
    audio = event.get("audio")
    if not isinstance(audio, str):
        raise ClientEventError(
            "input_audio_buffer.append needs 'audio': base64-encoded PCM16",
            code="missing_required_parameter" if audio is None else "invalid_value",
            param="audio",
        )
    try:
        return base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise ClientEventError("audio is not valid base64", param="audio") from None


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:22]}"
