"""A job runner's loop, free of Ray: claim, run through the transcription service with
heartbeats, keep each finished piece, store the result, deliver the webhook."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass

from speakerscribe.errors import ModelFailureError, SpeechServerError
from speakerscribe.jobs.api import request_for
from speakerscribe.jobs.codec import encode_result
from speakerscribe.jobs.model import JobStatus
from speakerscribe.jobs.resume import PieceLedger
from speakerscribe.jobs.store import JobStore
from speakerscribe.pipeline.service import TranscriptionService
from speakerscribe.webhooks import WebhookSender

logger = logging.getLogger("ray.serve")

POLL_S = 0.5
HEARTBEAT_S = 1.0


@dataclass
class _Progress:
    """The stage and fraction the service reported last; heartbeats carry them."""

    stage: str = "decoding"
    fraction: float = 0.0

    def __call__(self, stage: str, fraction: float) -> None:
        self.stage, self.fraction = stage, fraction


class JobWorker:
    """Runs up to ``jobs_at_once`` jobs; another worker (any replica, any node) takes over
    a job whose heartbeats stop, and reuses the pieces this one kept."""

    def __init__(
        self,
        store: JobStore,
        service: TranscriptionService,
        *,
        jobs_at_once: int,
        pieces_in_flight: int,
        webhooks: WebhookSender | None = None,
    ):
        self.store = store
        self.service = service
        self.jobs_at_once = jobs_at_once
        self.pieces_in_flight = pieces_in_flight
        self.webhooks = webhooks
        self.runner_id = f"runner-{uuid.uuid4().hex[:12]}"
        self.running: dict[str, asyncio.Task] = {}

    async def poll_forever(self) -> None:
        while True:
            try:
                while len(self.running) < self.jobs_at_once:
                    claimed = await asyncio.to_thread(self.store.claim, self.runner_id)
                    if claimed is None:
                        break
                    job, audio = claimed
                    self.running[job["id"]] = asyncio.create_task(self.run(job, audio))
            except Exception:  # the database restarts or is unreachable: keep polling
                logger.exception("job store unreachable")
            await asyncio.sleep(POLL_S)

    async def run(self, job: dict, audio: bytes) -> None:
        job_id = job["id"]
        state = _Progress()

        ledger = await PieceLedger.load(self.store, job_id)
        work = asyncio.create_task(
            self.service.transcribe(
                audio,
                request_for(job["task"], job["form"]),
                task=job["task"],
                progress=state,
                pieces_in_flight=self.pieces_in_flight,
                pieces=ledger,
            )
        )
        status: JobStatus = "failed"
        result, error, stopped = b"", None, False
        try:
            while not work.done():
                await asyncio.wait({work}, timeout=HEARTBEAT_S)
                try:
                    stopped = await asyncio.to_thread(
                        self.store.heartbeat,
                        job_id,
                        self.runner_id,
                        state.stage,
                        state.fraction,
                        ledger.counts(),
                    )
                except Exception:  # the database is restarting: keep working
                    logger.warning("job %s: heartbeat not delivered", job_id)
                    continue
                if stopped and not work.done():
                    work.cancel()
            result, status = encode_result(await work), "succeeded"
            if ledger.reused:
                logger.info("job %s resumed: %s", job_id, ledger.counts())
        except asyncio.CancelledError:
            if not stopped:  # this replica is going away: give the job back to the queue
                self.release(job_id)
                raise
            status = "cancelled"
        except SpeechServerError as failure:
            error = failure
        except Exception:  # stored as the job's error, the runner lives on
            logger.exception("job %s failed", job_id)
            error = ModelFailureError("the job failed while processing its audio")
        finally:
            self.running.pop(job_id, None)
            if not work.done():
                work.cancel()
        with contextlib.suppress(Exception):  # the pieces figures as they ended
            await asyncio.to_thread(
                self.store.heartbeat, job_id, self.runner_id, None, state.fraction, ledger.counts()
            )
        public = await asyncio.to_thread(
            self.store.finish, job_id, self.runner_id, status, result=result, error=error
        )
        if public and job.get("webhook_url"):
            await self._notify(job["webhook_url"], public)

    def release(self, job_id: str) -> None:
        """Give a job back to the queue, synchronously: the event loop is stopping, and the
        next runner should not wait ``job_stale_after_s`` for a job nobody works on."""
        try:
            self.store.release(job_id, self.runner_id)
        except Exception:
            logger.warning("job %s: not released; it is queued again once it goes stale", job_id)

    async def _notify(self, url: str, public: dict) -> None:
        """Deliver the finished job to the client's webhook (signed, checked again, retried)
        and record the outcome on the job."""
        if self.webhooks is None:  # the secret was removed since the job was accepted
            return
        event = {"type": f"job.{public['status']}", "job": public}
        outcome = await self.webhooks.deliver(url, f"{public['id']}.{public['status']}", event)
        if outcome.delivered_at is None:
            logger.warning("webhook for job %s not delivered: %s", public["id"], outcome.error)
        try:
            await asyncio.to_thread(self.store.record_webhook, public["id"], outcome.to_dict())
        except Exception:
            logger.warning("job %s: webhook outcome not recorded", public["id"])
