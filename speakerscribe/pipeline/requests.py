"""Checks of a transcription request against the server's settings, before any audio is
read: the model it names, its speaker counts, its known speakers."""

from __future__ import annotations

from speakerscribe.errors import InvalidRequestError, ModelNotFoundError
from speakerscribe.protocol import TranscriptionRequest
from speakerscribe.settings import Settings


def resolve_model(settings: Settings, requested: str | None) -> str:
    """The request's ``model`` → a served model id (aliases such as ``whisper-1`` too)."""
    if requested in (None, ""):
        return settings.model_id
    if requested in settings.served_models:
        return requested
    aliases = settings.resolved_aliases
    if requested in aliases:
        return aliases[requested]
    available = ", ".join(repr(m) for m in settings.model_ids)
    raise ModelNotFoundError(
        f"model {requested!r} is not served here; available: {available}", param="model"
    )


def check_speaker_limits(settings: Settings, request: TranscriptionRequest) -> None:
    limit = settings.max_speakers_limit
    for name in ("num_speakers", "min_speakers", "max_speakers"):
        value = getattr(request, name)
        if value is not None and value > limit:
            raise InvalidRequestError(
                f"{name} must be at most {limit} (the server's max_speakers_limit)", param=name
            )


def check_known_speakers(settings: Settings, request: TranscriptionRequest) -> None:
    limit = settings.max_known_speakers
    if len(request.known_speaker_names) > limit:
        raise InvalidRequestError(
            f"at most {limit} known speakers per request (the server's max_known_speakers)",
            param="known_speaker_names",
        )
    if request.known_speaker_names and request.multichannel:
        raise InvalidRequestError(
            "known speakers name diarized speakers; multichannel audio is not diarized",
            param="known_speaker_names",
        )


def check_request(settings: Settings, request: TranscriptionRequest) -> str:
    """Every check above; the served model id the request resolves to."""
    model = resolve_model(settings, request.model)
    check_speaker_limits(settings, request)
    check_known_speakers(settings, request)
    return model
