"""The store's database: transactions that lock as it needs, and SQL each dialect spells its way."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Column, Connection, Insert, Table, func, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite

from speakerscribe.jobs.schema import MIGRATIONS, open_engine, schema_versions


class Database:
    """One SQLite file or PostgreSQL database, as ``open_engine`` opens it."""

    def __init__(self, url: str):
        self.engine = open_engine(url)
        self.postgres = self.engine.dialect.name == "postgresql"

    def migrate(self) -> int:
        """Apply the missing migrations (one process at a time) and return the version."""
        with self.writing() as connection:
            schema_versions.create(connection, checkfirst=True)
            current = connection.scalar(select(func.max(schema_versions.c.version))) or 0
            for version in range(current + 1, len(MIGRATIONS) + 1):
                MIGRATIONS[version - 1](connection)
                connection.execute(
                    insert(schema_versions).values(version=version, applied_at=time.time())
                )
        return len(MIGRATIONS)

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read-only connection: on SQLite a deferred BEGIN, so readers never queue
        behind a writer (WAL gives them the last committed state)."""
        with self.engine.connect() as connection:
            yield connection.execution_options(reading=True)

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """One transaction that may write; on PostgreSQL it holds the store's advisory lock,
        so the job count and the schema change one writer at a time (claims do not take it:
        ``SKIP LOCKED`` lets them run side by side)."""
        with self.engine.begin() as connection:
            if self.postgres:
                connection.execute(text("SELECT pg_advisory_xact_lock(7305124)"))
            yield connection

    def greatest(self, column: Column[Any], value: float) -> Any:
        """The larger of a column and a value: SQLite's two-argument ``max``, PostgreSQL's
        ``greatest``."""
        return func.greatest(column, value) if self.postgres else func.max(column, value)

    def insert_if_absent(self, table: Table, **values: Any) -> Insert:
        """An insert that leaves an existing row with the same key as it is."""
        dialect = postgresql if self.postgres else sqlite
        return dialect.insert(table).values(**values).on_conflict_do_nothing()
