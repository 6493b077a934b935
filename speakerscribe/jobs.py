"""Background jobs for long files: the job table, free of Ray.

``JobTable`` is the whole state machine. In the application it lives inside one named,
detached Ray actor (``deployments/jobs.py``), so jobs outlive any ingress or runner
replica; here it is plain Python that unit tests drive directly.

    queued ──claim──▶ running ──finish──▶ succeeded | failed | cancelled
       │                 │  (runner silent for stale_after_s: back to queued, retried)
       └──cancel──▶ cancelled     running ──cancel──▶ cancelling ──finish──▶ cancelled

Runners claim queued jobs, report progress with heartbeats (which also tell them when a
cancel was asked for) and store the result. Finished jobs expire ``ttl_s`` after they end.
"""

from __future__ import annotations

import builtins
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Literal

from speakerscribe.errors import InvalidRequestError, RateLimitError, SpeechServerError

JobStatus = Literal["queued", "running", "cancelling", "succeeded", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
MAX_ATTEMPTS = 3
"""A job whose runner died this many times is failed instead of retried again."""


class JobNotFoundError(InvalidRequestError):
    status_code = 404
    code = "job_not_found"


class JobNotFinishedError(InvalidRequestError):
    status_code = 409
    code = "job_not_finished"


@dataclass(slots=True)
class Job:
    """What a client sees of a job (``public()``), plus the runner's bookkeeping."""

    id: str
    task: Literal["transcribe", "translate"]
    form: dict[str, Any]
    """The request's form fields, validated at submission; the runner rebuilds the request."""
    response_format: str
    created_at: float
    webhook_url: str | None = None
    owner: str | None = None
    """A hash of the API key that submitted the job (never shown); None on an open server."""
    webhook: dict[str, Any] | None = None
    """The webhook's delivery: attempts, last_status, delivered_at, error."""
    status: JobStatus = "queued"
    stage: str | None = None
    progress: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    error: dict[str, Any] | None = None
    error_status: int | None = None
    attempts: int = 0
    runner: str | None = None
    heartbeat_at: float | None = None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "audio.transcription.job",
            "task": self.task,
            "status": self.status,
            "stage": self.stage,
            "progress": round(self.progress, 4),
            "response_format": self.response_format,
            "created_at": int(self.created_at),
            "started_at": None if self.started_at is None else int(self.started_at),
            "finished_at": None if self.finished_at is None else int(self.finished_at),
            "attempts": self.attempts,
            "error": self.error,
            "webhook_url": self.webhook_url,
            "webhook": self.webhook,
        }


@dataclass(slots=True)
class _Entry:
    job: Job
    audio: bytes | None
    result: Any = None


class JobTable:
    """All jobs of one application; every method is quick and never awaits."""

    def __init__(self, ttl_s: float = 86_400.0, max_jobs: int = 64, stale_after_s: float = 30.0):
        self.ttl_s = ttl_s
        self.max_jobs = max_jobs
        self.stale_after_s = stale_after_s
        self._entries: dict[str, _Entry] = {}

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
        if len(self._entries) >= self.max_jobs:
            raise RateLimitError(
                f"{self.max_jobs} jobs are kept already; delete finished ones or wait for "
                "them to expire",
                code="too_many_jobs",
            )
        job = Job(
            id=f"job_{uuid.uuid4().hex}",
            task=task,  # type: ignore[arg-type]
            form=form,
            response_format=response_format,
            created_at=time.time(),
            webhook_url=webhook_url,
            owner=owner,
        )
        self._entries[job.id] = _Entry(job, audio)
        return job.public()

    # ``viewer``: the key hash whose jobs a caller may see, or None for every job (an open
    # server, or an admin key). Another key's job answers exactly as a missing one.

    def get(self, job_id: str, viewer: str | None = None) -> dict[str, Any]:
        return self._entry(job_id, viewer).job.public()

    def list(self, limit: int = 100, viewer: str | None = None) -> list[dict[str, Any]]:
        self.expire()
        jobs = sorted(
            (e.job for e in self._entries.values() if _visible(e.job, viewer)),
            key=lambda j: j.created_at,
            reverse=True,
        )
        return [job.public() for job in jobs[:limit]]

    def result(
        self, job_id: str, viewer: str | None = None
    ) -> tuple[dict[str, Any], Any, dict[str, Any]]:
        """(job, result, submitted form) of a succeeded job; the job's own error if it failed."""
        entry = self._entry(job_id, viewer)
        job = entry.job
        if job.status == "succeeded":
            return job.public(), entry.result, job.form
        if job.status == "failed" and job.error:
            raise _JobError(job.error, job.error_status or 500)
        if job.status == "cancelled":
            raise JobNotFinishedError(
                f"job {job_id} was cancelled; it has no result", param="job_id"
            )
        raise JobNotFinishedError(
            f"job {job_id} is {job.status} ({job.progress:.0%} done); poll it until it succeeds",
            param="job_id",
        )

    def cancel(self, job_id: str, viewer: str | None = None) -> dict[str, Any]:
        entry = self._entry(job_id, viewer)
        job = entry.job
        if job.status == "queued":
            self._end(entry, "cancelled")
        elif job.status == "running":
            job.status = "cancelling"  # the runner learns it at its next heartbeat
        return job.public()

    def delete(self, job_id: str, viewer: str | None = None) -> dict[str, Any]:
        """Forget a job (a running one is cancelled first by its runner's next heartbeat)."""
        entry = self._entry(job_id, viewer)
        public = self.cancel(job_id, viewer)
        if entry.job.status in FINISHED:
            del self._entries[job_id]
        return {**public, "deleted": entry.job.status in FINISHED}

    # --- runners ------------------------------------------------------------------------

    def claim(self, runner: str) -> tuple[dict[str, Any], bytes] | None:
        """The oldest queued job, now running on ``runner``, with its audio."""
        self.requeue_stale()
        queued = [e for e in self._entries.values() if e.job.status == "queued"]
        if not queued:
            return None
        entry = min(queued, key=lambda e: e.job.created_at)
        job = entry.job
        job.status, job.runner, job.attempts = "running", runner, job.attempts + 1
        job.started_at = job.heartbeat_at = time.time()
        job.stage, job.progress = "queued", 0.0
        return asdict(job), entry.audio  # type: ignore[return-value]

    def heartbeat(self, job_id: str, runner: str, stage: str | None, progress: float) -> bool:
        """Record progress; True tells the runner to stop (cancelled, or no longer its job)."""
        entry = self._entries.get(job_id)
        if entry is None or entry.job.runner != runner or entry.job.status in FINISHED:
            return True
        job = entry.job
        job.heartbeat_at = time.time()
        if stage is not None:
            job.stage = stage
        job.progress = max(job.progress, min(max(progress, 0.0), 1.0))
        return job.status == "cancelling"

    def finish(
        self,
        job_id: str,
        runner: str,
        status: JobStatus,
        *,
        result: Any = None,
        error: SpeechServerError | None = None,
    ) -> dict[str, Any] | None:
        """The runner's last word; ignored if the job was handed to another runner meanwhile."""
        entry = self._entries.get(job_id)
        if entry is None or entry.job.runner != runner or entry.job.status in FINISHED:
            return None
        if entry.job.status == "cancelling":
            status = "cancelled"
        entry.result = result if status == "succeeded" else None
        if error is not None:
            entry.job.error = error.to_openai()["error"]
            entry.job.error_status = error.status_code
        if status == "succeeded":
            entry.job.progress = 1.0
        self._end(entry, status)
        return entry.job.public()

    def record_webhook(self, job_id: str, outcome: dict[str, Any]) -> None:
        """The runner's report of the job's webhook delivery."""
        entry = self._entries.get(job_id)
        if entry is not None:
            entry.job.webhook = outcome

    def requeue_stale(self) -> builtins.list[str]:
        """Jobs whose runner went silent (its replica died) go back to the queue."""
        now, moved = time.time(), []
        for entry in self._entries.values():
            job = entry.job
            if job.status not in ("running", "cancelling"):
                continue
            if now - (job.heartbeat_at or 0.0) < self.stale_after_s:
                continue
            if job.status == "cancelling":
                self._end(entry, "cancelled")
            elif job.attempts >= MAX_ATTEMPTS:
                job.error = {
                    "message": f"the job's runner failed {job.attempts} times",
                    "type": "server_error",
                    "param": None,
                    "code": "runner_failed",
                }
                job.error_status = 500
                self._end(entry, "failed")
            else:
                job.status, job.runner, job.stage = "queued", None, "queued"
                moved.append(job.id)
        return moved

    # --- housekeeping -------------------------------------------------------------------

    def expire(self) -> builtins.list[str]:
        now = time.time()
        gone = [
            job_id
            for job_id, entry in self._entries.items()
            if entry.job.finished_at is not None and now - entry.job.finished_at > self.ttl_s
        ]
        for job_id in gone:
            del self._entries[job_id]
        return gone

    def _end(self, entry: _Entry, status: JobStatus) -> None:
        entry.job.status = status
        entry.job.finished_at = time.time()
        entry.job.heartbeat_at = None
        entry.audio = None  # the upload is not kept once the job is over

    def _entry(self, job_id: str, viewer: str | None = None) -> _Entry:
        self.expire()
        entry = self._entries.get(job_id)
        if entry is None or not _visible(entry.job, viewer):
            raise JobNotFoundError(
                f"no job {job_id!r} (finished jobs expire after {self.ttl_s:.0f} s)", param="job_id"
            )
        return entry


def _visible(job: Job, viewer: str | None) -> bool:
    return viewer is None or job.owner == viewer


class _JobError(SpeechServerError):
    """A failed job's stored error, raised again with its original status when fetched."""

    def __init__(self, error: dict[str, Any], status_code: int):
        super().__init__(
            error.get("message", "the job failed"), param=error.get("param"), code=error.get("code")
        )
        self.status_code = status_code
        self.error_type = error.get("type", "server_error")

    def __reduce__(self):
        return (_JobError, (self.to_openai()["error"], self.status_code))
