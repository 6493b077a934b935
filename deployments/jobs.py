"""Background jobs: the job table in a detached Ray actor, and the JobRunner deployment.

The table (``speakerscribe.jobs.JobTable``) lives in one named, detached actor per
application, so a job survives the ingress replica that accepted it and the runner
replica that works on it (a silent runner's jobs are queued again). Runners poll the
table, run each job through the same ``TranscriptionService`` as synchronous requests
(same stages, same batches) with a cap on pieces in flight, and report progress with
heartbeats that also carry cancellation back to them.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import cast

import ray
from ray import serve
from ray.actor import ActorHandle

from deployments.stages import HandleStages, StageHandles
from speakerscribe.errors import ModelFailureError, SpeechServerError
from speakerscribe.jobs import JobTable
from speakerscribe.memory import start_heap_trimmer
from speakerscribe.protocol import TranscriptionRequest, TranslationRequest
from speakerscribe.serving import TranscriptionService
from speakerscribe.settings import Settings
from speakerscribe.webhooks import WebhookPolicy, WebhookSender

logger = logging.getLogger("ray.serve")

POLL_S = 0.5
HEARTBEAT_S = 1.0
STALE_AFTER_S = 30.0
"""A running job whose runner sent no heartbeat for this long is queued again."""


def job_table(settings: Settings) -> ActorHandle:
    """The application's job table actor, created by whichever replica asks first."""
    app = serve.get_replica_context().app_name or "default"
    actor = ray.remote(num_cpus=0, max_restarts=-1)(JobTable)
    # Ray types .remote() as "ActorHandle[T] | type[T]" (so methods resolve); it is a handle
    return cast(
        "ActorHandle[JobTable]",
        actor.options(
            name=f"speakerscribe-jobs-{app}",
            namespace="speakerscribe",
            lifetime="detached",
            get_if_exists=True,
        ).remote(ttl_s=settings.job_ttl_s, max_jobs=settings.max_jobs, stale_after_s=STALE_AFTER_S),
    )


def request_for(task: str, form: dict) -> TranscriptionRequest:
    if task == "translate":
        return TranslationRequest.from_form(form).as_transcription()
    return TranscriptionRequest.from_form(form)


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=16)
class JobRunner:
    """Works through queued jobs, ``settings.jobs_per_runner`` at a time per replica."""

    def __init__(
        self,
        settings: Settings,
        handles: StageHandles,
    ):
        self.settings = settings
        start_heap_trimmer(settings.heap_trim_interval_s)
        self.runner_id = f"runner-{uuid.uuid4().hex[:12]}"
        self.table = job_table(settings)
        stages = HandleStages(settings.model_id, handles, retries=settings.stage_retries)
        self.service = TranscriptionService(settings, stages, queue_for_budget=True)
        self.running: dict[str, asyncio.Task] = {}
        secret = settings.webhook_secret
        self.webhooks = (
            WebhookSender(
                secret.get_secret_value(),
                WebhookPolicy(settings.webhook_allow),
                max_attempts=settings.webhook_max_attempts,
                timeout_s=settings.webhook_timeout_s,
            )
            if secret is not None
            else None
        )
        self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            try:
                while len(self.running) < self.settings.jobs_per_runner:
                    claimed = await self.table.claim.remote(self.runner_id)
                    if claimed is None:
                        break
                    job, audio = claimed
                    self.running[job["id"]] = asyncio.create_task(self._run(job, audio))
            except Exception:  # the table restarts; keep polling
                logger.exception("job table unreachable")
            await asyncio.sleep(POLL_S)

    async def _run(self, job: dict, audio: bytes) -> None:
        job_id = job["id"]
        state = {"stage": "decoding", "progress": 0.0}

        def progress(stage: str, fraction: float) -> None:
            state["stage"], state["progress"] = stage, fraction

        work = asyncio.create_task(
            self.service.transcribe(
                audio,
                request_for(job["task"], job["form"]),
                task=job["task"],
                progress=progress,
                pieces_in_flight=self.settings.job_pieces_in_flight,
            )
        )
        status, result, error, stopped = "failed", None, None, False
        try:
            while not work.done():
                await asyncio.wait({work}, timeout=HEARTBEAT_S)
                try:
                    stopped = await self.table.heartbeat.remote(
                        job_id, self.runner_id, state["stage"], state["progress"]
                    )
                except Exception:  # the table is restarting: keep working
                    logger.warning("job %s: heartbeat not delivered", job_id)
                    continue
                if stopped and not work.done():
                    work.cancel()
            result, status = await work, "succeeded"
        except asyncio.CancelledError:
            if not stopped:  # this replica is going away: the job is queued again once its
                raise  # heartbeats stop, and another runner starts it over
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
        public = await self.table.finish.remote(
            job_id, self.runner_id, status, result=result, error=error
        )
        if public and job.get("webhook_url"):
            await self._notify(job["webhook_url"], public)

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
            await self.table.record_webhook.remote(public["id"], outcome.to_dict())
        except Exception:
            logger.warning("job %s: webhook outcome not recorded", public["id"])

    def stats(self) -> dict:
        return {"runner": self.runner_id, "running": sorted(self.running), "time": time.time()}

    def ready(self) -> bool:
        return not self._poller.done()

    def check_health(self) -> None:
        if self._poller.done():
            raise RuntimeError("the job poller stopped")
