"""How jobs end and go: the statements that cancels, finishes, requeues and expiry share."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, delete, update

from speakerscribe.jobs.model import JobStatus
from speakerscribe.jobs.payloads import Payloads
from speakerscribe.jobs.schema import job_pieces, jobs


def end_jobs(
    connection: Connection,
    payloads: Payloads,
    job_id: str | None,
    status: JobStatus,
    *,
    where: Any = None,
    **values: Any,
) -> bool:
    """Jobs end (``job_id``, or every job ``where`` holds): the audio and the pieces are
    not kept once a job is over. True if any job ended."""
    condition = jobs.c.id == job_id if job_id is not None else jobs.c.id.is_not(None)
    if where is not None:
        condition = condition & where
    ended = list(
        connection.execute(
            update(jobs)
            .where(condition)
            .values(
                status=status,
                finished_at=time.time(),
                heartbeat_at=None,
                audio=None,
                audio_key=None,
                **values,
            )
            .returning(jobs.c.id)
        ).scalars()
    )
    if not ended:
        return False
    connection.execute(delete(job_pieces).where(job_pieces.c.job_id.in_(ended)))
    for job_id_ended in ended:
        payloads.drop_audio(job_id_ended)
    return True


def delete_jobs(connection: Connection, condition: Any) -> list[str | None]:
    """Delete the rows (their pieces go with them) and return the blob keys they held."""
    rows = connection.execute(
        delete(jobs).where(condition).returning(jobs.c.audio_key, jobs.c.result_key)
    ).all()
    return [key for row in rows for key in row]
