"""A background job as clients see it, its states, and the errors its routes answer.

    queued ──claim──▶ running ──finish──▶ succeeded | failed | cancelled
       │                 │  (runner silent for stale_after_s: back to queued, retried)
       └──cancel──▶ cancelled     running ──cancel──▶ cancelling ──finish──▶ cancelled

Runners claim queued jobs, report progress with heartbeats (which also tell them when a
cancel was asked for) and store the result. Finished jobs expire ``ttl_s`` after they end.
``speakerscribe.jobs.store.JobStore`` keeps all of it in a database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from speakerscribe.errors import InvalidRequestError, SpeechServerError

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
    pieces_total: int = 0
    pieces_done: int = 0
    pieces_reused: int = 0
    """Pieces of this attempt taken from an earlier attempt's work instead of decoded again."""

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
            "pieces": {
                "total": self.pieces_total,
                "done": self.pieces_done,
                "reused": self.pieces_reused,
            },
            "error": self.error,
            "webhook_url": self.webhook_url,
            "webhook": self.webhook,
        }


def visible(job: Job, viewer: str | None) -> bool:
    """Another key's job answers exactly as a missing one; None sees every job."""
    return viewer is None or job.owner == viewer


class StoredJobError(SpeechServerError):
    """A failed job's stored error, raised again with its original status when fetched."""

    def __init__(self, error: dict[str, Any], status_code: int):
        super().__init__(
            error.get("message", "the job failed"), param=error.get("param"), code=error.get("code")
        )
        self.status_code = status_code
        self.error_type = error.get("type", "server_error")

    def __reduce__(self):
        return (StoredJobError, (self.to_openai()["error"], self.status_code))
