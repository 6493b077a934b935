"""Every failure is an OpenAI error object with its status code, without Ray (TestClient)."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from speakerscribe.api.http import install_error_handlers, sse
from speakerscribe.errors import InvalidRequestError, OverloadedError


class Body(BaseModel):
    beam_size: int


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/bad")
    async def bad():
        raise InvalidRequestError("language: not a language code", param="language")

    @app.post("/busy")
    async def busy():
        raise OverloadedError("the server is at capacity; retry shortly")

    @app.post("/broken")
    async def broken():
        raise RuntimeError("a bug, with request content in its message")

    @app.post("/typed")
    async def typed(body: Body):
        return body

    return TestClient(app, raise_server_exceptions=False)


def test_bad_input_is_a_400_naming_the_field(client):
    response = client.post("/bad")
    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": "language: not a language code",
        "type": "invalid_request_error",
        "param": "language",
        "code": "invalid_value",
    }


def test_a_body_that_does_not_validate_is_a_400_too(client):
    response = client.post("/typed", json={"beam_size": "many"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "beam_size"


def test_overload_says_when_to_come_back(client):
    response = client.post("/busy")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.json()["error"]["code"] == "overloaded"


def test_an_unforeseen_error_is_a_500_without_its_message(client):
    response = client.post("/broken")
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "server_error" and "request content" not in error["message"]


def test_a_stream_that_fails_ends_with_an_error_event_and_done():
    async def events():
        yield {"type": "transcript.text.delta", "delta": "Hello"}
        raise InvalidRequestError("the audio ended early")

    async def collect() -> list[str]:
        return [chunk async for chunk in sse(events())]

    chunks = asyncio.run(collect())
    assert chunks[0] == 'data: {"type": "transcript.text.delta", "delta": "Hello"}\n\n'
    assert '"type": "error"' in chunks[1] and "the audio ended early" in chunks[1]
    assert chunks[-1] == "data: [DONE]\n\n"
