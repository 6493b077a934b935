"""Background jobs for long files: the job model, the store that keeps them, and resume."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from speakerscribe.jobs.blobs import BlobStore
from speakerscribe.jobs.model import (
    FINISHED,
    MAX_ATTEMPTS,
    Job,
    JobNotFinishedError,
    JobNotFoundError,
    JobStatus,
    StoredJobError,
)
from speakerscribe.jobs.store import JobStore

if TYPE_CHECKING:
    from speakerscribe.settings import Settings

__all__ = [
    "FINISHED",
    "MAX_ATTEMPTS",
    "BlobStore",
    "Job",
    "JobNotFinishedError",
    "JobNotFoundError",
    "JobStatus",
    "JobStore",
    "StoredJobError",
    "open_job_store",
]


def open_job_store(settings: Settings, app: str = "default") -> JobStore:
    """The store the settings name: ``job_store_url``, else one SQLite file per Serve
    application under ``data_dir`` (two applications never run each other's jobs)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.job_store_url.get_secret_value() if settings.job_store_url else None
    blobs = settings.job_blob_url or str(settings.data_dir / "blobs")
    if url and not settings.job_blob_url:
        logging.getLogger(__name__).warning(
            "job_store_url is set but job_blob_url is not: uploads over %d bytes go to %s, "
            "which every node must share (a common volume), or set job_blob_url",
            settings.job_inline_max_bytes,
            blobs,
        )
    return JobStore(
        url or f"sqlite:///{settings.data_dir / f'jobs-{app}.sqlite3'}",
        BlobStore(blobs),
        ttl_s=settings.job_ttl_s,
        max_jobs=settings.max_jobs,
        stale_after_s=settings.job_stale_after_s,
        inline_max_bytes=settings.job_inline_max_bytes,
    )
