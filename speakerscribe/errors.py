"""One exception hierarchy, each class mapped once to an HTTP status and an OpenAI error object.

Deployments raise these (never FastAPI's HTTPException); the ingress turns them into
``{"error": {"message", "type", "param", "code"}}`` in one exception handler. They
pickle cleanly, so an error raised inside a Transcriber replica reaches the client as
the same error rather than a generic 500.
"""

from __future__ import annotations

from typing import Any


class SpeechServerError(Exception):
    """Base class: a message for the client, the HTTP status, OpenAI's type/param/code."""

    status_code: int = 500
    error_type: str = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def __reduce__(self):  # keep param/code across Ray's pickling
        return (_rebuild, (type(self), self.message, self.param, self.code))

    def to_openai(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


def _rebuild(cls, message, param, code):
    return cls(message, param=param, code=code)


class InvalidRequestError(SpeechServerError):
    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_value"


class UnsupportedMediaError(InvalidRequestError):
    status_code = 415
    code = "unsupported_media_type"


class AudioDecodeError(InvalidRequestError):
    """The upload is not audio we can decode (empty, truncated, not a media file)."""

    code = "invalid_audio"


class PayloadTooLargeError(InvalidRequestError):
    status_code = 413
    code = "payload_too_large"


class ModelNotFoundError(InvalidRequestError):
    status_code = 404
    code = "model_not_found"


class RateLimitError(SpeechServerError):
    """The client holds more of something (jobs) than the server keeps for it."""

    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"


class OverloadedError(SpeechServerError):
    status_code = 503
    error_type = "server_error"
    code = "overloaded"


class StageTimeoutError(SpeechServerError):
    status_code = 504
    error_type = "server_error"
    code = "timeout"


class ModelFailureError(SpeechServerError):
    """A model call failed for reasons that are not the client's fault."""

    status_code = 500
    error_type = "server_error"
    code = "model_failure"
