"""API keys: Bearer header, constant-time match, keys from settings and a file."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from speakerscribe.api.auth import ApiKeyMiddleware, ApiKeys, AuthenticationError, key_owner


def test_open_when_no_keys():
    ApiKeys().check(None)


def test_keys_from_list_and_file(tmp_path):
    key_file = tmp_path / "keys"
    key_file.write_text("# team keys\nsk-file-1\n\nsk-file-2  # rotated 2026-11\n")
    keys = ApiKeys(["sk-list"], key_file)
    for good in ("sk-list", "sk-file-1", "sk-file-2"):
        keys.check(f"Bearer {good}")
    for bad in (None, "", "Bearer", "Basic sk-list", "Bearer sk-nope", "sk-list"):
        with pytest.raises(AuthenticationError) as raised:
            keys.check(bad)
        assert raised.value.status_code == 401
        assert "sk-" not in raised.value.message  # keys never echoed back


def _app_with_keys(keys: ApiKeys, root_path: str = ""):
    """A small app behind the same middleware: an API route, a page and a health check."""
    app = FastAPI(root_path=root_path)
    app.add_middleware(ApiKeyMiddleware)
    app.state.api_keys = keys
    read_body: list[bool] = []

    @app.post("/v1/audio/transcriptions")
    async def transcribe(request: Request):
        read_body.append(True)
        await request.body()
        caller = request.state.caller
        return {"owner": caller.owner, "admin": caller.admin}

    @app.get("/health")
    async def health():
        return {"ok": True}

    @app.get("/")
    async def page():
        return {"page": True}

    return app, read_body


def test_middleware_guards_every_v1_route_and_leaves_the_rest_open():
    app, read_body = _app_with_keys(ApiKeys(["sk-user"], admin_keys=["sk-admin"]))
    client = TestClient(app)
    refused = client.post("/v1/audio/transcriptions", content=b"x" * 1000)
    assert refused.status_code == 401 and not read_body  # refused before the body is read
    assert refused.json()["error"]["code"] == "invalid_api_key"
    wrong = client.post("/v1/audio/transcriptions", headers={"Authorization": "Bearer sk-no"})
    assert wrong.status_code == 401 and "sk-" not in wrong.text
    user = client.post("/v1/audio/transcriptions", headers={"Authorization": "Bearer sk-user"})
    assert user.json() == {"owner": key_owner("sk-user"), "admin": False}
    admin = client.post("/v1/audio/transcriptions", headers={"Authorization": "Bearer sk-admin"})
    assert admin.json()["admin"] is True
    assert client.get("/health").status_code == 200 and client.get("/").status_code == 200
    assert client.get("/v1/no-such-route").status_code == 401  # unknown routes reveal nothing


def test_middleware_is_open_without_keys_and_under_a_route_prefix():
    app, _ = _app_with_keys(ApiKeys())
    assert TestClient(app).post("/v1/audio/transcriptions").json() == {
        "owner": None,
        "admin": False,
    }
    prefixed, _ = _app_with_keys(ApiKeys(["sk-user"]), root_path="/bench")
    client = TestClient(prefixed, root_path="/bench")
    assert client.post("/v1/audio/transcriptions").status_code == 401
    assert client.get("/health").status_code == 200
