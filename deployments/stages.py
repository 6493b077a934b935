"""The model stages as the ingress and the job runner reach them: through DeploymentHandles."""

import numpy as np
from ray.serve.handle import DeploymentHandle

from speakerscribe.transcription import DecodeOptions
from speakerscribe.types import Diarization, DiarizationOptions, Segment


class HandleStages:
    """``speakerscribe.serving.Stages`` over DeploymentHandles."""

    def __init__(
        self,
        default_model: str,
        separator: DeploymentHandle,
        transcriber: DeploymentHandle,
        diarizer: DeploymentHandle,
    ):
        self.default_model = default_model
        self.separator = separator
        self.transcriber = transcriber
        self.diarizer = diarizer

    def _transcriber_for(self, model: str) -> DeploymentHandle:
        """Other models go through Serve multiplexing: routed to replicas that hold them."""
        if model in ("", self.default_model):
            return self.transcriber
        return self.transcriber.options(multiplexed_model_id=model)

    async def separate(self, audio: np.ndarray) -> np.ndarray:
        return await self.separator.separate.remote(audio)

    async def detect_language(self, audio: np.ndarray, model: str) -> str:
        return await self._transcriber_for(model).detect_language.remote(audio, model)

    async def transcribe(self, piece: np.ndarray, options: DecodeOptions) -> list[Segment]:
        return await self._transcriber_for(options.model).transcribe.remote(piece, options)

    async def diarize(self, audio: np.ndarray, options: DiarizationOptions) -> Diarization:
        return await self.diarizer.diarize.remote(audio, options)

    async def embed(self, audio: np.ndarray) -> np.ndarray:
        return await self.diarizer.embed.remote(audio)
