"""Shared fixtures: where the real test audio lives; a throwaway PostgreSQL server."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from postgres_server import create_database, postgres_available, running_postgres

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


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One PostgreSQL server for the session (tests/postgres_server.py). Without its
    binaries the tests that need it skip, or fail where SPEAKERSCRIBE_REQUIRE_POSTGRES=1."""
    reason = postgres_available()
    if reason is not None:
        if os.environ.get("SPEAKERSCRIBE_REQUIRE_POSTGRES") == "1":  # CI sets it
            pytest.fail(reason)
        pytest.skip(reason)
    with running_postgres() as url:
        yield url


@pytest.fixture
def postgres_database_factory(postgres_url: str) -> Callable[[], str]:
    """Makes a new empty database on the session's server and returns its URL."""
    return lambda: create_database(postgres_url)
