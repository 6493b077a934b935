"""Optional API keys: ``Authorization: Bearer <key>``, compared in constant time.

Keys come from the ``api_keys`` setting and/or a file (one key per line, ``#`` comments).
With no keys configured the server is open, as a laptop install expects.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from speakerscribe.errors import SpeechServerError


class AuthenticationError(SpeechServerError):
    status_code = 401
    error_type = "invalid_request_error"
    code = "invalid_api_key"


@dataclass(frozen=True)
class Caller:
    """Who made a request: ``owner`` is a hash of the key (never the key), None when open."""

    owner: str | None = None
    admin: bool = False

    @property
    def viewer(self) -> str | None:
        """Whose jobs this caller sees: its own, or everyone's (None) when open or admin."""
        return None if self.admin else self.owner


def key_owner(key: str) -> str:
    """What a job records of the key that made it: its SHA-256, so a leak reveals no key."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    def __init__(
        self,
        keys: list[str] | tuple[str, ...] = (),
        key_file: Path | None = None,
        admin_keys: list[str] | tuple[str, ...] = (),
    ):
        admins = [k.strip() for k in admin_keys if k.strip()]
        loaded = [k.strip() for k in keys if k.strip()] + admins
        if key_file is not None:
            for line in Path(key_file).read_text().splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    loaded.append(line)
        self._keys = [k.encode() for k in loaded]
        self._admin_owners = {key_owner(k) for k in admins}

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def caller(self, authorization: str | None) -> Caller:
        """The checked caller of a request (AuthenticationError without a known key)."""
        if not self._keys:
            return Caller()
        key = self.check(authorization)
        owner = key_owner(key)
        return Caller(owner=owner, admin=owner in self._admin_owners)

    def check(self, authorization: str | None) -> str:
        """The request's key; AuthenticationError unless the header carries a known one."""
        if not self._keys:
            return ""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError(
                "missing API key: send 'Authorization: Bearer <key>'", param=None
            )
        candidate = token.strip().encode()
        # compare against every key, so timing says nothing about which (or whether) one matched
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(candidate, key)
        if not matched:
            raise AuthenticationError("invalid API key")
        return candidate.decode()


PROTECTED_PREFIX = "/v1/"
"""Every API route; the page, ``/health``, ``/docs`` and the OpenAPI schema stay open."""


class ApiKeyMiddleware:
    """One gate for every HTTP route under ``/v1/``: a request without a known key gets a
    401 before its body is read, and routes find the checked caller on ``request.state``.

    The keys are the app's ``state.api_keys`` (an ``ApiKeys``), set when the replica starts;
    a route added later is protected without doing anything. WebSockets authenticate in
    their handshake (browsers send the key as a subprotocol), so they are let through.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _route_path(scope).startswith(PROTECTED_PREFIX):
            keys: ApiKeys = getattr(scope["app"].state, "api_keys", None) or ApiKeys()
            try:
                caller = keys.caller(Headers(scope=scope).get("authorization"))
            except AuthenticationError as error:
                response = JSONResponse(error.to_openai(), status_code=error.status_code)
                await response(scope, receive, send)
                return
            scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path inside the application (Serve mounts an app under its route prefix)."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path
