"""The job store: every job, its uploaded audio, finished pieces and result, in a database.

SQLite (a file under the data directory, WAL mode) by default; any PostgreSQL URL for a
cluster whose nodes share one database. Every ingress and runner replica opens the same
store, so a job outlives the replica that accepted it, the runner that worked on it and
the whole cluster. Payloads over ``inline_max_bytes`` (most uploads) go to a
``BlobStore`` (files under the data directory, or any fsspec URL) and the row keeps
their key (``jobs.payloads``); ``jobs.database`` holds what SQLite and PostgreSQL do
differently. All methods are synchronous and short; async callers run them in a thread.
"""

from __future__ import annotations

import builtins
import time
import uuid
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from speakerscribe.errors import RateLimitError, SpeechServerError
from speakerscribe.jobs.blobs import BlobStore
from speakerscribe.jobs.database import Database
from speakerscribe.jobs.ending import delete_jobs, end_jobs
from speakerscribe.jobs.model import (
    FINISHED,
    MAX_ATTEMPTS,
    Job,
    JobNotFinishedError,
    JobNotFoundError,
    JobStatus,
    StoredJobError,
    visible,
)
from speakerscribe.jobs.payloads import Payloads
from speakerscribe.jobs.schema import JOB_COLUMNS, job_from_row, job_pieces, job_values, jobs


class JobStore:
    """Jobs in a database; the state machine of ``speakerscribe.jobs.model``.

    ``viewer``: the key hash whose jobs a caller may see, or None for every job (an open
    server, or an admin key).
    """

    def __init__(
        self,
        url: str,
        blobs: BlobStore,
        *,
        ttl_s: float = 86_400.0,
        max_jobs: int = 64,
        stale_after_s: float = 30.0,
        inline_max_bytes: int = 1 << 20,
    ):
        self.url = url
        self.database = Database(url)
        self.engine = self.database.engine
        self.blobs = blobs
        self.ttl_s = ttl_s
        self.max_jobs = max_jobs
        self.stale_after_s = stale_after_s
        self.payloads = Payloads(blobs, inline_max_bytes)
        self.migrate()

    # --- schema -------------------------------------------------------------------------

    def migrate(self) -> int:
        """Apply the missing migrations (one process at a time) and return the version."""
        return self.database.migrate()

    # --- clients (through the ingress) -------------------------------------------------

    def submit(
        self,
        form: dict[str, Any],
        audio: bytes,
        *,
        task: str = "transcribe",
        response_format: str = "json",
        webhook_url: str | None = None,
        owner: str | None = None,
    ) -> dict[str, Any]:
        self.expire()
        job = Job(
            id=f"job_{uuid.uuid4().hex}",
            task=task,  # type: ignore[arg-type]
            form=form,
            response_format=response_format,
            created_at=time.time(),
            webhook_url=webhook_url,
            owner=owner,
        )
        # written before the row points at it
        payload = self.payloads.columns("audio", job.id, audio)
        with self.database.writing() as connection:
            kept = connection.scalar(select(func.count()).select_from(jobs)) or 0
            if kept >= self.max_jobs:
                self.payloads.drop([payload.get("audio_key")])
                raise RateLimitError(
                    f"{self.max_jobs} jobs are kept already; delete finished ones or wait for "
                    "them to expire",
                    code="too_many_jobs",
                )
            connection.execute(insert(jobs).values(**job_values(job), **payload))
        return job.public()

    def get(self, job_id: str, viewer: str | None = None) -> dict[str, Any]:
        return self._job(job_id, viewer).public()

    def list(self, limit: int = 100, viewer: str | None = None) -> builtins.list[dict[str, Any]]:
        self.expire()
        query = select(*JOB_COLUMNS).order_by(jobs.c.created_at.desc()).limit(limit)
        if viewer is not None:
            query = query.where(jobs.c.owner == viewer)
        with self.database.reading() as connection:
            return [job_from_row(row).public() for row in connection.execute(query)]

    def result(
        self, job_id: str, viewer: str | None = None
    ) -> tuple[dict[str, Any], bytes, dict[str, Any]]:
        """(job, stored result, submitted form) of a succeeded job; a failed job's own error."""
        job = self._job(job_id, viewer)
        if job.status == "succeeded":
            with self.database.reading() as connection:
                row = connection.execute(
                    select(jobs.c.result, jobs.c.result_key).where(jobs.c.id == job_id)
                ).one()
            return job.public(), self.payloads.read(row.result, row.result_key), job.form
        if job.status == "failed" and job.error:
            raise StoredJobError(job.error, job.error_status or 500)
        if job.status == "cancelled":
            raise JobNotFinishedError(
                f"job {job_id} was cancelled; it has no result", param="job_id"
            )
        raise JobNotFinishedError(
            f"job {job_id} is {job.status} ({job.progress:.0%} done); poll it until it succeeds",
            param="job_id",
        )

    def cancel(self, job_id: str, viewer: str | None = None) -> dict[str, Any]:
        """A queued job ends at once; a running one is told at its runner's next heartbeat."""
        job = self._job(job_id, viewer)
        with self.database.writing() as connection:
            queued = jobs.c.status == "queued"
            if not end_jobs(connection, self.payloads, job_id, "cancelled", where=queued):
                connection.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id, jobs.c.status == "running")
                    .values(status="cancelling")
                )
        return self._job(job.id, viewer).public()

    def delete(self, job_id: str, viewer: str | None = None) -> dict[str, Any]:
        """Forget a finished job with its files; a running one is cancelled first."""
        public = self.cancel(job_id, viewer)
        deleted = public["status"] in FINISHED
        if deleted:
            with self.database.writing() as connection:
                keys = delete_jobs(connection, jobs.c.id == job_id)
            self.payloads.drop(keys)
        return {**public, "deleted": deleted}

    # --- runners ------------------------------------------------------------------------

    def claim(self, runner: str) -> tuple[dict[str, Any], bytes] | None:
        """The oldest queued job, now running on ``runner``, with its audio (one statement:
        two runners never get the same job)."""
        self.requeue_stale()
        now = time.time()
        oldest = (
            select(jobs.c.id)
            .where(jobs.c.status == "queued")
            .order_by(jobs.c.created_at)
            .limit(1)
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite's BEGIN IMMEDIATE locks
            .scalar_subquery()
        )
        claim = (
            update(jobs)
            .where(jobs.c.id == oldest, jobs.c.status == "queued")
            .values(
                status="running",
                runner=runner,
                attempts=jobs.c.attempts + 1,
                started_at=now,
                heartbeat_at=now,
                stage="queued",
                progress=0.0,
                pieces_done=0,
                pieces_reused=0,
            )
            .returning(*JOB_COLUMNS, jobs.c.audio, jobs.c.audio_key)
        )
        with self.engine.begin() as connection:
            row = connection.execute(claim).one_or_none()
        if row is None:
            return None
        job = job_from_row(row)
        return job_values(job), self.payloads.read(row.audio, row.audio_key)

    def heartbeat(
        self,
        job_id: str,
        runner: str,
        stage: str | None,
        progress: float,
        pieces: tuple[int, int, int] | None = None,
    ) -> bool:
        """Record progress (and ``pieces``: total, done, reused); True tells the runner to
        stop (cancelled, or no longer its job)."""
        values: dict[str, Any] = {
            "heartbeat_at": time.time(),
            "progress": self.database.greatest(jobs.c.progress, min(max(progress, 0.0), 1.0)),
        }
        if stage is not None:
            values["stage"] = stage
        if pieces is not None:
            values["pieces_total"], values["pieces_done"], values["pieces_reused"] = pieces
        with self.engine.begin() as connection:
            status = connection.execute(
                update(jobs)
                .where(
                    jobs.c.id == job_id,
                    jobs.c.runner == runner,
                    jobs.c.status.in_(("running", "cancelling")),
                )
                .values(**values)
                .returning(jobs.c.status)
            ).scalar_one_or_none()
        return status != "running"

    def save_piece(self, job_id: str, key: str, payload: bytes) -> None:
        """A finished piece's words, kept until the job ends so a later attempt reuses them."""
        statement = self.database.insert_if_absent(
            job_pieces, job_id=job_id, key=key, payload=payload, saved_at=time.time()
        )
        try:
            with self.engine.begin() as connection:
                connection.execute(statement)
        except IntegrityError:  # the job was deleted or expired meanwhile: nothing to keep
            pass

    def pieces(self, job_id: str) -> dict[str, bytes]:
        """Every piece an earlier attempt of this job finished, by key."""
        with self.database.reading() as connection:
            rows = connection.execute(
                select(job_pieces.c.key, job_pieces.c.payload).where(job_pieces.c.job_id == job_id)
            )
            return {row.key: row.payload for row in rows}

    def release(self, job_id: str, runner: str) -> bool:
        """A runner that is shutting down gives its job back to the queue at once (without
        spending one of its attempts); its pieces stay for the next runner."""
        with self.engine.begin() as connection:
            moved = connection.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.runner == runner, jobs.c.status == "running")
                .values(
                    status="queued",
                    runner=None,
                    stage="queued",
                    heartbeat_at=None,
                    attempts=jobs.c.attempts - 1,
                )
            ).rowcount
        return bool(moved)

    def finish(
        self,
        job_id: str,
        runner: str,
        status: JobStatus,
        *,
        result: bytes = b"",
        error: SpeechServerError | None = None,
    ) -> dict[str, Any] | None:
        """The runner's last word; ignored if the job was handed to another runner meanwhile."""
        # a large result is written before the row points at it, and dropped if not kept
        payload = self.payloads.columns("result", job_id, result) if status == "succeeded" else {}
        values: dict[str, Any] = {}
        if error is not None:
            values["error"] = error.to_openai()["error"]
            values["error_status"] = error.status_code
        with self.database.writing() as connection:
            current = connection.execute(
                select(jobs.c.status).where(
                    jobs.c.id == job_id,
                    jobs.c.runner == runner,
                    jobs.c.status.in_(("running", "cancelling")),
                )
            ).scalar_one_or_none()
            final: JobStatus = "cancelled" if current == "cancelling" else status
            if final == "succeeded":
                values.update(payload, progress=1.0)
            ended = current is not None and end_jobs(
                connection, self.payloads, job_id, final, **values
            )
        if final != "succeeded" or not ended:
            self.payloads.drop([payload.get("result_key")])
        return self._job(job_id).public() if ended else None

    def record_webhook(self, job_id: str, outcome: dict[str, Any]) -> None:
        """The runner's report of the job's webhook delivery."""
        with self.engine.begin() as connection:
            connection.execute(update(jobs).where(jobs.c.id == job_id).values(webhook=outcome))

    def requeue_stale(self) -> builtins.list[str]:
        """Jobs whose runner went silent (its replica or node died) go back to the queue,
        or fail once they have used up their attempts."""
        silent_since = time.time() - self.stale_after_s
        silent = jobs.c.status.in_(("running", "cancelling")) & (jobs.c.heartbeat_at < silent_since)
        with self.database.writing() as connection:
            end_jobs(
                connection,
                self.payloads,
                None,
                "cancelled",
                where=silent & (jobs.c.status == "cancelling"),
            )
            end_jobs(
                connection,
                self.payloads,
                None,
                "failed",
                where=silent & (jobs.c.status == "running") & (jobs.c.attempts >= MAX_ATTEMPTS),
                error={
                    "message": f"the job's runner failed {MAX_ATTEMPTS} times",
                    "type": "server_error",
                    "param": None,
                    "code": "runner_failed",
                },
                error_status=500,
            )
            moved = connection.execute(
                update(jobs)
                .where(silent & (jobs.c.status == "running"))
                .values(status="queued", runner=None, stage="queued")
                .returning(jobs.c.id)
            ).scalars()
            return builtins.list(moved)

    # --- housekeeping -------------------------------------------------------------------

    def expire(self) -> builtins.list[str]:
        """Finished jobs older than ``ttl_s`` go, with their audio, pieces and result."""
        expired = jobs.c.finished_at < time.time() - self.ttl_s
        with self.database.reading() as connection:
            gone = builtins.list(connection.execute(select(jobs.c.id).where(expired)).scalars())
        if not gone:
            return []
        with self.database.writing() as connection:
            keys = delete_jobs(connection, jobs.c.id.in_(gone) & expired)
        self.payloads.drop(keys)
        return gone

    def close(self) -> None:
        self.engine.dispose()

    # --- inside ---------------------------------------------------------------------------

    def _job(self, job_id: str, viewer: str | None = None) -> Job:
        self.expire()
        with self.database.reading() as connection:
            row = connection.execute(select(*JOB_COLUMNS).where(jobs.c.id == job_id)).one_or_none()
        job = None if row is None else job_from_row(row)
        if job is None or not visible(job, viewer):
            raise JobNotFoundError(
                f"no job {job_id!r} (finished jobs expire after {self.ttl_s:.0f} s)", param="job_id"
            )
        return job
