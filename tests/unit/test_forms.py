"""The upload form without Ray: size limits, one file, list and nested field names."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from speakerscribe.api.forms import read_upload_form
from speakerscribe.errors import SpeechServerError

LIMIT = 1000


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()

    @app.exception_handler(SpeechServerError)
    async def _error(_: Request, error: SpeechServerError) -> JSONResponse:
        return JSONResponse(error.to_openai(), status_code=error.status_code)

    @app.post("/upload")
    async def upload(request: Request):
        fields, data = await read_upload_form(request, LIMIT)
        return {"fields": fields, "size": len(data)}

    return TestClient(app)


def test_fields_lists_and_nested_fields(client):
    answer = client.post(
        "/upload",
        files={"file": ("a.wav", b"x" * 10)},
        data={
            "model": "whisper-1",
            "timestamp_granularities[]": ["word", "segment"],
            "chunking_strategy[type]": "server_vad",
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "fields": {
            "model": "whisper-1",
            "timestamp_granularities": ["word", "segment"],
            "chunking_strategy": {"type": "server_vad"},
        },
        "size": 10,
    }


def test_a_missing_file_is_a_400_naming_it(client):
    answer = client.post("/upload", data={"model": "whisper-1"})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "file"


def test_a_body_that_is_not_a_form_is_a_415(client):
    answer = client.post("/upload", json={"file": "x"})
    assert answer.status_code == 415


def test_a_declared_length_over_the_limit_is_a_413(client):
    answer = client.post(
        "/upload", files={"file": ("a.wav", b"x" * (LIMIT * 2))}, data={"model": "m"}
    )
    assert answer.status_code == 413 and "byte limit" in answer.json()["error"]["message"]


def test_a_chunked_body_over_the_limit_is_a_413_without_a_length():
    """No Content-Length: the bytes are counted as they arrive."""
    import asyncio

    from starlette.requests import Request as StarletteRequest

    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + b"x" * (LIMIT * 3)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    chunks = [body[i : i + 256] for i in range(0, len(body), 256)]

    async def receive():
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/upload",
        "headers": [(b"content-type", f"multipart/form-data; boundary={boundary}".encode())],
    }
    with pytest.raises(SpeechServerError) as raised:
        asyncio.run(read_upload_form(StarletteRequest(scope, receive), LIMIT))
    assert raised.value.status_code == 413


def test_a_nested_field_given_also_flat_is_a_400(client):
    answer = client.post(
        "/upload",
        files={"file": ("a.wav", b"x")},
        data={"chunking_strategy": "auto", "chunking_strategy[type]": "server_vad"},
    )
    assert answer.status_code == 400
