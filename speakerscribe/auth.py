"""Optional API keys: ``Authorization: Bearer <key>``, compared in constant time.

Keys come from the ``api_keys`` setting and/or a file (one key per line, ``#`` comments).
With no keys configured the server is open, as a laptop install expects.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from speakerscribe.errors import SpeechServerError


class AuthenticationError(SpeechServerError):
    status_code = 401
    error_type = "invalid_request_error"
    code = "invalid_api_key"


class ApiKeys:
    def __init__(self, keys: list[str] | tuple[str, ...] = (), key_file: Path | None = None):
        loaded = [k.strip() for k in keys if k.strip()]
        if key_file is not None:
            for line in Path(key_file).read_text().splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    loaded.append(line)
        self._keys = [k.encode() for k in loaded]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def check(self, authorization: str | None) -> None:
        """Raise AuthenticationError unless the header carries a known key."""
        if not self._keys:
            return
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
