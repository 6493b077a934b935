"""The JobRunner deployment: a thin Serve shell around ``speakerscribe.jobs.runner``.

Jobs live in the job store (SQLite under ``data_dir``, or PostgreSQL), not in Ray: every
runner replica polls the same store, runs each job through the same
``TranscriptionService`` as synchronous requests (same stages, same batches), keeps each
finished piece there, and takes over the jobs of a runner whose heartbeats stopped.
"""

from __future__ import annotations

import asyncio
import time

from ray import serve

from deployments.stages import HandleStages, StageHandles
from speakerscribe.jobs import open_job_store
from speakerscribe.jobs.runner import JobWorker
from speakerscribe.memory import start_heap_trimmer
from speakerscribe.pipeline.service import TranscriptionService
from speakerscribe.settings import Settings
from speakerscribe.webhooks import WebhookPolicy, WebhookSender


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=16)
class JobRunner:
    """Works through queued jobs, ``settings.jobs_per_runner`` at a time per replica."""

    def __init__(self, settings: Settings, handles: StageHandles):
        start_heap_trimmer(settings.heap_trim_interval_s)
        stages = HandleStages(settings.model_id, handles, retries=settings.stage_retries)
        secret = settings.webhook_secret
        self.worker = JobWorker(
            open_job_store(settings, serve.get_replica_context().app_name),
            TranscriptionService(settings, stages, queue_for_budget=True),
            jobs_at_once=settings.jobs_per_runner,
            pieces_in_flight=settings.job_pieces_in_flight,
            webhooks=WebhookSender(
                secret.get_secret_value(),
                WebhookPolicy(settings.webhook_allow),
                max_attempts=settings.webhook_max_attempts,
                timeout_s=settings.webhook_timeout_s,
            )
            if secret is not None
            else None,
        )
        self._poller = asyncio.get_running_loop().create_task(self.worker.poll_forever())

    def stats(self) -> dict:
        worker = self.worker
        return {"runner": worker.runner_id, "running": sorted(worker.running), "time": time.time()}

    def ready(self) -> bool:
        return not self._poller.done()

    def check_health(self) -> None:
        if self._poller.done():
            raise RuntimeError("the job poller stopped")

    def __del__(self) -> None:
        """Serve's graceful shutdown: running jobs go back to the queue at once."""
        for job_id in list(self.worker.running):
            self.worker.release(job_id)
