"""The native-stack check: torch and torchaudio from one release, and one clear line if not."""

from __future__ import annotations

import subprocess
import sys

import pytest

from speakerscribe import preflight


def test_installed_torch_and_torchaudio_are_one_release():
    versions = preflight.installed_versions()
    assert preflight.release(versions["torch"]) == preflight.release(versions["torchaudio"]), (
        f"torch {versions['torch']} beside torchaudio {versions['torchaudio']}: "
        f"reinstall from uv.lock"
    )
    assert preflight.mismatched_pairs(versions) == []


def test_release_ignores_the_local_build_tag():
    assert preflight.release("2.11.0+cu130") == "2.11.0"
    assert preflight.mismatched_pairs({"torch": "2.11.0+cpu", "torchaudio": "2.11.0"}) == []


def test_a_patch_release_apart_is_a_mismatch(monkeypatch):
    """The pair that broke every fresh install: torchaudio 2.11.1 beside torch 2.11.0."""
    monkeypatch.setattr(
        preflight, "installed_versions", lambda: {"torch": "2.11.0", "torchaudio": "2.11.1"}
    )
    with pytest.raises(preflight.NativeStackBroken) as caught:
        preflight.check_native_stack()
    message = str(caught.value)
    assert "torchaudio 2.11.1 beside torch 2.11.0" in message
    assert "\n" not in message


def test_a_library_that_fails_to_load_is_one_line(monkeypatch):
    def broken(name):
        raise OSError("libtorchaudio.so: undefined symbol: torch_exception_get_what\nmore")

    monkeypatch.setattr(preflight.importlib, "import_module", broken)
    with pytest.raises(preflight.NativeStackBroken) as caught:
        preflight.check_native_stack()
    message = str(caught.value)
    assert message.startswith("cannot load torch (libtorchaudio.so: undefined symbol")
    assert "\n" not in message


def test_command_line_passes_on_the_locked_install():
    done = subprocess.run(
        [sys.executable, "-m", "speakerscribe.preflight"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("native stack ok: torch ")
