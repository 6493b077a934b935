"""Start-up check of the native stack: one clear line instead of a traceback per replica.

torchaudio's C++ library only loads beside the torch release it was built against (the
2.11.1/2.11.0 pair failed with an undefined symbol in every replica). The builder and
``make serve`` run this before any deployment is imported, so a broken install stops the
start with one line and a non-zero exit rather than with Serve retrying replicas.

    python -m speakerscribe.preflight
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys

# Compiled extensions the stages load, in the order their failures are most telling.
NATIVE_MODULES = ("torch", "torchaudio", "ctranslate2", "onnxruntime", "av", "soxr")
# Distributions whose release (X.Y.Z, local build tag ignored) must equal torch's.
TORCH_PAIRED = ("torchaudio",)


class NativeStackBroken(RuntimeError):
    """The installed native packages do not load together; the message is one line."""


def release(version: str) -> str:
    """``2.11.0+cu130`` → ``2.11.0``: the release, without the local build tag."""
    return version.split("+", 1)[0]


def mismatched_pairs(versions: dict[str, str]) -> list[str]:
    """Descriptions of each paired package whose release differs from torch's."""
    torch_release = release(versions["torch"])
    return [
        f"{name} {versions[name]} beside torch {versions['torch']}"
        for name in TORCH_PAIRED
        if name in versions and release(versions[name]) != torch_release
    ]


def installed_versions(names: tuple[str, ...] = ("torch", *TORCH_PAIRED)) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def check_native_stack() -> None:
    """Raise ``NativeStackBroken`` (one line) unless every native module imports."""
    versions = installed_versions()
    if "torch" not in versions:
        raise NativeStackBroken("torch is not installed: run `make install`")
    mismatched = mismatched_pairs(versions)
    if mismatched:
        raise NativeStackBroken(
            f"{'; '.join(mismatched)}: they only load as one release pair; "
            f"reinstall from the lock with `make install`"
        )
    for module in NATIVE_MODULES:
        try:
            importlib.import_module(module)
        except Exception as exc:  # an OSError or ImportError from a native library
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise NativeStackBroken(
                f"cannot load {module} ({first_line}); reinstall from the lock with `make install`"
            ) from exc


def main() -> int:
    try:
        check_native_stack()
    except NativeStackBroken as exc:
        print(f"speakerscribe: {exc}", file=sys.stderr)
        return 1
    versions = installed_versions()
    print("native stack ok: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
