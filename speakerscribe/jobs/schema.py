"""The job store's tables, their numbered migrations, and engines that lock as it needs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    create_engine,
    event,
)

from speakerscribe.jobs.model import Job

metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("task", String(16), nullable=False),
    Column("form", JSON, nullable=False),
    Column("response_format", String(32), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("webhook_url", String(2048)),
    Column("owner", String(128)),
    Column("webhook", JSON),
    Column("status", String(16), nullable=False),
    Column("stage", String(32)),
    Column("progress", Float, nullable=False, default=0.0),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("error", JSON),
    Column("error_status", Integer),
    Column("attempts", Integer, nullable=False, default=0),
    Column("runner", String(64)),
    Column("heartbeat_at", Float),
    Column("pieces_total", Integer, nullable=False, default=0),
    Column("pieces_done", Integer, nullable=False, default=0),
    Column("pieces_reused", Integer, nullable=False, default=0),
    Column("audio", LargeBinary),
    Column("audio_key", String(256)),
    Column("result", LargeBinary),
    Column("result_key", String(256)),
    Index("jobs_by_status", "status", "created_at"),
    Index("jobs_by_finish", "finished_at"),
)

job_pieces = Table(
    "job_pieces",
    metadata,
    Column("job_id", String(64), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("payload", LargeBinary, nullable=False),
    Column("saved_at", Float, nullable=False),
)

schema_versions = Table(
    "schema_versions",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", Float, nullable=False),
)


def _create_v1(connection: Connection) -> None:
    metadata.create_all(connection, tables=[jobs, job_pieces])


MIGRATIONS: list[Callable[[Connection], None]] = [_create_v1]
"""Schema version N is ``MIGRATIONS[N - 1]``; start-up applies the missing ones in order.
Append a function to change the schema; never edit one that has shipped."""

JOB_FIELDS = tuple(f.name for f in fields(Job))
JOB_COLUMNS = [jobs.c[name] for name in JOB_FIELDS]


def job_values(job: Job) -> dict[str, Any]:
    """A job's fields as the values of its row."""
    return {name: getattr(job, name) for name in JOB_FIELDS}


def job_from_row(row: Any) -> Job:
    """The job a row of ``JOB_COLUMNS`` holds."""
    return Job(**{name: getattr(row, name) for name in JOB_FIELDS})


def _sqlite_url(url: str) -> bool:
    return url.startswith("sqlite")


def open_engine(url: str) -> Engine:
    """An engine whose transactions lock the way the claim and the limits need.

    SQLite: WAL (readers never wait for the writer), a busy timeout (writers from other
    processes wait rather than fail), foreign keys on, and ``BEGIN IMMEDIATE`` so a
    transaction that writes holds the write lock from its first statement. PostgreSQL:
    the plain ``postgresql://`` scheme means psycopg 3.
    """
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if not _sqlite_url(url):
        return create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        reading = connection.get_execution_options().get("reading", False)
        connection.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")

    return engine
