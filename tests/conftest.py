"""Shared fixtures: where the real test audio lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def testdata_dir() -> Path:
    """../shared/testdata beside the repository (SPEAKERSCRIBE_TESTDATA overrides)."""
    override = os.environ.get("SPEAKERSCRIBE_TESTDATA")
    return Path(override) if override else REPO.parent / "shared" / "testdata"


@pytest.fixture(scope="session")
def testdata() -> Path:
    path = testdata_dir()
    if not path.is_dir():
        pytest.fail(f"test audio not found at {path}; set SPEAKERSCRIBE_TESTDATA")
    return path


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    path = REPO / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path
