"""API keys: Bearer header, constant-time match, keys from settings and a file."""

from __future__ import annotations

import pytest

from speakerscribe.auth import ApiKeys, AuthenticationError


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
