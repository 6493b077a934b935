"""The model stages as the ingress and the job runner reach them: through DeploymentHandles."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from ray.serve import metrics
from ray.serve.handle import DeploymentHandle

from speakerscribe.pipeline.stages import retry_lost_replica
from speakerscribe.types import Diarization, DiarizationOptions, Segment
from speakerscribe.whisper.options import DecodeOptions


@dataclass(frozen=True)
class StageHandles:
    """The model stages' deployments, bound once in ``pipeline_graph.build`` and passed
    whole to the ingress and the job runner (Serve finds bound deployments inside it):
    a new stage is a field here and a line there."""

    separator: DeploymentHandle
    transcriber: DeploymentHandle
    diarizer: DeploymentHandle

    def by_name(self) -> dict[str, DeploymentHandle]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


class HandleStages:
    """``speakerscribe.pipeline.stages.Stages`` over DeploymentHandles; a call whose replica died is
    sent again (``retries`` times), counted in ``speakerscribe_stage_retries_total``."""

    def __init__(self, default_model: str, handles: StageHandles, retries: int = 2):
        self.default_model = default_model
        self.handles = handles
        self.separator = handles.separator
        self.transcriber = handles.transcriber
        self.diarizer = handles.diarizer
        self.retries = retries
        self._retried = metrics.Counter(
            "speakerscribe_stage_retries_total",
            description="stage calls sent again because their replica died",
            tag_keys=("stage",),
        )

    async def _call(self, stage: str, call: Callable[[], Awaitable[Any]]) -> Any:
        return await retry_lost_replica(
            call, self.retries, on_retry=lambda: self._retried.inc(tags={"stage": stage})
        )

    def _transcriber_for(self, model: str) -> DeploymentHandle:
        """Other models go through Serve multiplexing: routed to replicas that hold them."""
        if model in ("", self.default_model):
            return self.transcriber
        return self.transcriber.options(multiplexed_model_id=model)

    async def separate(self, audio: np.ndarray) -> np.ndarray:
        return await self._call("separation", lambda: self.separator.separate.remote(audio))

    async def detect_language(self, audio: np.ndarray, model: str) -> str:
        handle = self._transcriber_for(model)
        return await self._call(
            "language detection", lambda: handle.detect_language.remote(audio, model)
        )

    async def transcribe(self, piece: np.ndarray, options: DecodeOptions) -> list[Segment]:
        handle = self._transcriber_for(options.model)
        return await self._call("transcription", lambda: handle.transcribe.remote(piece, options))

    async def diarize(self, audio: np.ndarray, options: DiarizationOptions) -> Diarization:
        return await self._call("diarization", lambda: self.diarizer.diarize.remote(audio, options))

    async def embed(self, audio: np.ndarray) -> np.ndarray:
        return await self._call("embedding", lambda: self.diarizer.embed.remote(audio))
