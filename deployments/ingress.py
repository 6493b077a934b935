"""The HTTP front door: OpenAI-compatible routes on FastAPI, fanning out to the model stages."""

import asyncio
import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from ray import serve
from ray.serve import metrics
from ray.serve.config import BackpressureConfig
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

import speakerscribe
from deployments.stages import HandleStages, StageHandles
from speakerscribe.api.auth import ApiKeyMiddleware, ApiKeys, Caller
from speakerscribe.api.forms import read_upload_form
from speakerscribe.api.http import (
    ERROR_RESPONSES,
    RETRY_AFTER_S,
    error_response,
    form_schema,
    install_error_handlers,
    sse,
    websocket_key,
)
from speakerscribe.errors import (
    InvalidRequestError,
    ModelNotFoundError,
    OverloadedError,
    SpeechServerError,
)
from speakerscribe.formats import render
from speakerscribe.jobs import open_job_store
from speakerscribe.jobs.api import JobsApi, request_for
from speakerscribe.live_limits import (
    LiveLimitError,
    SessionCounter,
)
from speakerscribe.memory import start_heap_trimmer
from speakerscribe.pipeline.prepared import server_timing
from speakerscribe.pipeline.requests import check_request
from speakerscribe.pipeline.service import TranscriptionService
from speakerscribe.protocol import (
    ModelCard,
    ModelList,
    ResponseFormat,
    TranscriptionRequest,
    TranslationRequest,
    blank_is_none,
)
from speakerscribe.realtime.connection import serve_live_session
from speakerscribe.settings import Settings
from speakerscribe.webhooks import WebhookPolicy

logger = logging.getLogger("ray.serve")

api = FastAPI(
    title="speakerscribe",
    summary="Who said what and when: OpenAI-compatible transcription with speaker labels.",
    version="0.1.0",
)
api.add_middleware(ApiKeyMiddleware)
install_error_handlers(api)
# The browser page: plain HTML and JavaScript, no build step; it calls the API by relative URLs.
api.mount("/ui", StaticFiles(directory=Path(speakerscribe.__file__).parent / "static", html=True))


@api.exception_handler(BackPressureError)
async def _stage_overloaded(_: Request, error: BackPressureError) -> JSONResponse:
    """A model stage's queue is full: tell the client when to come back."""
    return error_response(OverloadedError("the server is at capacity; retry shortly"))


async def _ready(handle: DeploymentHandle) -> bool:
    return await handle.ready.remote()


@serve.deployment(
    max_ongoing_requests=256,  # Serve's default of 5 would cap how many pieces reach the batcher
    max_queued_requests=512,  # past this, Serve's proxy answers 503 with Retry-After
    backpressure_config=BackpressureConfig(status_code=503, retry_after_s=RETRY_AFTER_S),
    ray_actor_options={"num_cpus": 0.25},
)
@serve.ingress(api)
class SpeechIngress:
    def __init__(
        self,
        settings: Settings,
        handles: StageHandles,
        job_runner: DeploymentHandle,
    ):
        self.settings = settings
        start_heap_trimmer(settings.heap_trim_interval_s)
        self.api_keys = ApiKeys(settings.api_keys, settings.api_keys_file, settings.admin_api_keys)
        api.state.api_keys = self.api_keys  # ApiKeyMiddleware's keys
        self.webhook_policy = WebhookPolicy(settings.webhook_allow)
        self._live_sessions = SessionCounter(settings.live_max_sessions_per_key)
        self.stages = HandleStages(settings.model_id, handles, retries=settings.stage_retries)
        self.service = TranscriptionService(settings, self.stages)
        self.job_runner = job_runner
        self.jobs = JobsApi(open_job_store(settings, serve.get_replica_context().app_name))
        self._stage_seconds = metrics.Histogram(
            "speakerscribe_stage_seconds",
            description="Wall time of each pipeline stage of a request, seen from the ingress.",
            boundaries=[0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800],
            tag_keys=("stage",),
        )
        self._live_streams = metrics.Gauge(
            "speakerscribe_live_streams",
            description="Open live transcription WebSockets on this ingress replica.",
        )
        self._live_streams.set(0)
        self._open_live_streams = 0
        self._audio_seconds = metrics.Counter(
            "speakerscribe_audio_seconds_total",
            description="Seconds of audio answered, by response format.",
            tag_keys=("response_format",),
        )

    @api.post(
        "/v1/audio/transcriptions",
        responses=ERROR_RESPONSES,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"multipart/form-data": {"schema": form_schema()}},
            }
        },
    )
    async def create_transcription(self, request: Request) -> Response:
        """Transcribe (and by default diarize) an uploaded audio file, as OpenAI's endpoint."""
        fields, data = await self._read_form(request)
        transcription_request = TranscriptionRequest.from_form(fields)
        service = self.service
        if transcription_request.stream:
            prepared = await service.prepare(data, transcription_request)
            return StreamingResponse(
                sse(service.stream_events(prepared)), media_type="text/event-stream"
            )
        result = await service.transcribe(data, transcription_request)
        return self._answer(
            result,
            transcription_request.response_format,
            transcription_request.timestamp_granularities,
        )

    @api.post(
        "/v1/audio/translations",
        responses=ERROR_RESPONSES,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"multipart/form-data": {"schema": form_schema(TranslationRequest)}},
            }
        },
    )
    async def create_translation(self, request: Request) -> Response:
        """Speech in any language → English text, as OpenAI's endpoint.

        English-only models (the bundled tiny.en) can only answer English audio, which
        needs no translation; multilingual models translate with Whisper's translate task.
        """
        fields, data = await self._read_form(request)
        translation_request = TranslationRequest.from_form(fields)
        result = await self.service.transcribe(
            data, translation_request.as_transcription(), task="translate"
        )
        return self._answer(result, translation_request.response_format)

    def _answer(
        self, result, response_format: ResponseFormat, granularities=("segment",)
    ) -> Response:
        """A finished result in the asked format, with its stage timings and metrics."""
        for stage, seconds in result.stage_seconds.items():
            self._stage_seconds.observe(seconds, tags={"stage": stage})
        self._audio_seconds.inc(result.duration, tags={"response_format": response_format})
        body, media_type = render(result, response_format, granularities)
        headers = {"Server-Timing": server_timing(result.stage_seconds)}
        if isinstance(body, dict):
            return JSONResponse(body, headers=headers)
        return PlainTextResponse(body, media_type=media_type, headers=headers)

    @api.get("/v1/models", response_model=ModelList, responses=ERROR_RESPONSES)
    async def list_models(self) -> ModelList:
        return ModelList(data=[ModelCard(id=model) for model in self.settings.model_ids])

    @api.get("/v1/models/{model_id:path}", response_model=ModelCard, responses=ERROR_RESPONSES)
    async def get_model(self, model_id: str) -> ModelCard:
        if model_id not in self.settings.model_ids:
            raise ModelNotFoundError(f"model {model_id!r} is not served here", param="model")
        return ModelCard(id=model_id)

    @api.websocket("/v1/realtime")
    async def realtime(self, websocket: WebSocket, intent: str = "transcription") -> None:
        """Live transcription, speaking OpenAI's Realtime transcription protocol.

        JSON client events, or raw PCM16 binary frames at the session's input rate. Model
        work goes through the same Transcriber (sharing its batches with uploads) and the
        Diarizer's speaker embedding; the session holds only the open utterance.
        """
        authorization, subprotocol = websocket_key(websocket)
        try:
            caller = self.api_keys.caller(authorization)
        except SpeechServerError as error:
            await websocket.close(code=1008, reason=error.message[:120])
            return
        await websocket.accept(subprotocol=subprotocol)
        if intent != "transcription":
            refusal = InvalidRequestError(
                f"only intent=transcription is served here, not {intent!r}", param="intent"
            )
            await websocket.send_json({"type": "error", **refusal.to_openai()})
            await websocket.close(code=1008)
            return
        owner = caller.owner or "open"
        try:
            self._live_sessions.open(owner)
        except LiveLimitError as limit:
            await websocket.send_json({"type": "error", **limit.to_openai()})
            await websocket.close(code=limit.close_code)
            return
        try:
            await self._live_session(websocket)
        finally:
            self._live_sessions.close(owner)

    async def _live_session(self, websocket: WebSocket) -> None:
        self._open_live_streams += 1
        self._live_streams.set(self._open_live_streams)
        try:
            await serve_live_session(
                websocket, self.stages, self.settings, self.service.resolve_model
            )
        finally:
            self._open_live_streams -= 1
            self._live_streams.set(self._open_live_streams)

    # --- jobs: long files in the background ------------------------------------------------

    @api.post(
        "/v1/audio/transcriptions/jobs",
        status_code=202,
        responses=ERROR_RESPONSES,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {"schema": form_schema(TranscriptionRequest, jobs=True)}
                },
            }
        },
    )
    async def create_transcription_job(self, request: Request) -> JSONResponse:
        """Accept a transcription to run in the background; answers 202 with the job to poll."""
        return await self._submit_job(request, "transcribe")

    @api.post(
        "/v1/audio/translations/jobs",
        status_code=202,
        responses=ERROR_RESPONSES,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {"schema": form_schema(TranslationRequest, jobs=True)}
                },
            }
        },
    )
    async def create_translation_job(self, request: Request) -> JSONResponse:
        """Accept a translation to run in the background; answers 202 with the job to poll."""
        return await self._submit_job(request, "translate")

    @api.get("/v1/audio/jobs", responses=ERROR_RESPONSES)
    async def list_jobs(self, request: Request, limit: int = 100) -> JSONResponse:
        """This key's jobs (every job for an admin key, or on a server without keys)."""
        viewer = self._viewer(request)
        jobs = await self.jobs.list(max(1, min(limit, 1000)), viewer)
        return JSONResponse({"object": "list", "data": jobs})

    @api.get("/v1/audio/jobs/{job_id}", responses=ERROR_RESPONSES)
    async def get_job(self, job_id: str, request: Request) -> JSONResponse:
        """Status, stage and progress (the fraction of the audio transcribed)."""
        return JSONResponse(await self.jobs.get(job_id, self._viewer(request)))

    @api.get("/v1/audio/jobs/{job_id}/result", responses=ERROR_RESPONSES)
    async def get_job_result(
        self, job_id: str, request: Request, response_format: str | None = None
    ) -> Response:
        """The finished result, in the submitted response_format or the one asked for here."""
        job, result, form = await self.jobs.result(job_id, self._viewer(request))
        chosen = response_format or job["response_format"]
        # the submitted form with this response_format: the same checks as a synchronous request
        asked = request_for(job["task"], {**form, "response_format": chosen})
        body, media_type = render(
            result, asked.response_format, getattr(asked, "timestamp_granularities", ("segment",))
        )
        if isinstance(body, dict):
            return JSONResponse(body)
        return PlainTextResponse(body, media_type=media_type)

    @api.post("/v1/audio/jobs/{job_id}/cancel", responses=ERROR_RESPONSES)
    async def cancel_job(self, job_id: str, request: Request) -> JSONResponse:
        """Stop a job: a queued one at once, a running one within about a second."""
        return JSONResponse(await self.jobs.cancel(job_id, self._viewer(request)))

    @api.delete("/v1/audio/jobs/{job_id}", responses=ERROR_RESPONSES)
    async def delete_job(self, job_id: str, request: Request) -> JSONResponse:
        return JSONResponse(await self.jobs.delete(job_id, self._viewer(request)))

    async def _submit_job(self, request: Request, task: str) -> JSONResponse:
        """Validate everything a job can be checked for up front, then queue it."""
        caller: Caller = request.state.caller
        fields, data = await self._read_form(request)
        webhook_url = blank_is_none(fields.pop("webhook_url", None))
        if webhook_url is not None:
            await self._check_webhook(webhook_url)
        transcription_request = request_for(task, fields)
        if transcription_request.stream:
            raise InvalidRequestError("jobs cannot stream; poll the job instead", param="stream")
        check_request(self.settings, transcription_request)
        job = await self.jobs.submit(
            fields,
            data,
            task=task,
            response_format=fields.get("response_format") or "json",
            webhook_url=webhook_url,
            owner=caller.owner,
        )
        return JSONResponse(
            job, status_code=202, headers={"Location": f"/v1/audio/jobs/{job['id']}"}
        )

    def _viewer(self, request: Request) -> str | None:
        caller: Caller = request.state.caller
        return caller.viewer

    async def _check_webhook(self, url: str) -> None:
        """Refuse, before anything is queued, a webhook the server would not deliver."""
        if self.settings.webhook_secret is None:
            raise InvalidRequestError(
                "webhooks are off on this server (no webhook_secret is configured)",
                param="webhook_url",
            )
        await asyncio.to_thread(self.webhook_policy.check, url)  # DNS: off the event loop

    @api.get("/", include_in_schema=False)
    async def home(self) -> RedirectResponse:
        return RedirectResponse("ui/")

    @api.get("/health")
    async def health(self) -> JSONResponse:
        """200 only when every stage answers; 503 with the failing ones otherwise.

        A replica answers only once its __init__ has loaded its models, so 200 means the
        default models are loaded on at least one replica of each stage.
        """
        handles = {**self.stages.handles.by_name(), "job_runner": self.job_runner}
        results = await asyncio.gather(
            *[asyncio.wait_for(_ready(h), timeout=5.0) for h in handles.values()],
            return_exceptions=True,
        )
        status = {name: (r is True) for name, r in zip(handles, results, strict=True)}
        healthy = all(status.values())
        return JSONResponse(
            {
                "status": "ok" if healthy else "unavailable",
                "deployments": status,
                "models": self.settings.served_models,
            },
            status_code=200 if healthy else 503,
        )

    async def _read_form(self, request: Request) -> tuple[dict[str, Any], bytes]:
        return await read_upload_form(request, self.settings.max_upload_bytes)
