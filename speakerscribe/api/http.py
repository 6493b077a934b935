"""The HTTP side of the API, free of Ray: OpenAI error objects for every failure, the
server-sent event stream, the WebSocket key handshake, and the form's OpenAPI schema."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from speakerscribe.errors import (
    InvalidRequestError,
    ModelFailureError,
    OverloadedError,
    SpeechServerError,
)
from speakerscribe.protocol import ErrorResponse, TranscriptionRequest

logger = logging.getLogger("ray.serve")
RETRY_AFTER_S = 5


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse}
    for status in (400, 401, 404, 409, 413, 415, 429, 500, 503, 504)
}


KEY_SUBPROTOCOL = "openai-insecure-api-key."
"""Browsers cannot set headers on a WebSocket; OpenAI's clients send the key as a subprotocol."""


def websocket_key(websocket: WebSocket) -> tuple[str | None, str | None]:
    """(Authorization header value, subprotocol to echo) from a WebSocket handshake."""
    header = websocket.headers.get("authorization")
    protocols = [
        p.strip()
        for p in websocket.headers.get("sec-websocket-protocol", "").split(",")
        if p.strip()
    ]
    for protocol in protocols:
        if protocol.startswith(KEY_SUBPROTOCOL) and header is None:
            header = f"Bearer {protocol[len(KEY_SUBPROTOCOL) :]}"
    echo = "realtime" if "realtime" in protocols else None
    return header, echo


def error_response(error: SpeechServerError) -> JSONResponse:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if isinstance(error, OverloadedError) else None
    return JSONResponse(error.to_openai(), status_code=error.status_code, headers=headers)


async def _speech_error(_: Request, error: SpeechServerError) -> JSONResponse:
    return error_response(error)


async def _unexpected_error(_: Request, error: Exception) -> JSONResponse:
    """Anything unforeseen is still an OpenAI error object, logged without request content."""
    logger.exception("unhandled error: %s", type(error).__name__)
    return error_response(ModelFailureError("internal error while processing the request"))


async def _validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
    first = error.errors()[0]
    param = ".".join(str(p) for p in first["loc"][1:]) or None
    return error_response(InvalidRequestError(f"{param}: {first['msg']}", param=param))


async def sse(events):
    """Server-sent events; an error after the first byte becomes an ``error`` event."""
    try:
        async for event in events:
            yield f"data: {json.dumps(event)}\n\n"
    except SpeechServerError as error:
        yield f"data: {json.dumps({'type': 'error', **error.to_openai()})}\n\n"
    except Exception:  # the client must learn that the stream failed
        logger.exception("transcription stream failed")
        failure = ModelFailureError("transcription failed while streaming")
        yield f"data: {json.dumps({'type': 'error', **failure.to_openai()})}\n\n"
    yield "data: [DONE]\n\n"


def form_schema(
    model: type[BaseModel] = TranscriptionRequest, jobs: bool = False
) -> dict[str, Any]:
    """OpenAPI schema of the multipart form, derived from the request model."""
    schema = model.model_json_schema()
    if jobs:
        schema["properties"].pop("stream", None)
        schema["properties"]["webhook_url"] = {
            "type": "string",
            "description": "POSTed the finished job as JSON "
            "({type: job.succeeded|job.failed|job.cancelled, job})",
        }
    schema["properties"] = {
        "file": {"type": "string", "format": "binary"},
        **schema["properties"],
    }
    schema["required"] = ["file"]
    return schema


def install_error_handlers(app: FastAPI) -> None:
    """Every failure answers an OpenAI error object with its status code."""
    app.add_exception_handler(SpeechServerError, _speech_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)
