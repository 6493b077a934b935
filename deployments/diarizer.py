"""Diarizer: pyannote.audio speaker diarization on the whole (separated) audio."""

from __future__ import annotations

import asyncio

import numpy as np
from ray import serve

from speakerscribe.devices import torch_device
from speakerscribe.diarization import load_diarizer
from speakerscribe.settings import Settings
from speakerscribe.types import SpeakerTurn


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=8, max_queued_requests=128)
class Diarizer:
    def __init__(self, settings: Settings):
        self.model = load_diarizer(
            settings.diarization_pipeline,
            token=settings.hf_token,
            cache_dir=settings.model_cache_dir,
            device=torch_device(settings.diarization_device),
        )
        # pyannote pipelines keep per-call state: one call at a time per replica.
        self._lock = asyncio.Lock()

    async def diarize(
        self,
        audio: np.ndarray,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
    ) -> list[SpeakerTurn]:
        async with self._lock:
            return await asyncio.to_thread(
                self.model,
                audio,
                num_speakers=num_speakers,
                min_speakers=min_speakers,
                max_speakers=max_speakers,
            )

    async def embed(self, audio: np.ndarray) -> np.ndarray:
        """A speaker embedding of one clip: live streams match their speakers with these.

        Short and frequent, so it does not wait behind a whole-file diarization.
        """
        return await asyncio.to_thread(self.model.embed, audio)

    def ready(self) -> bool:
        return True

