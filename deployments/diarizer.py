"""Diarizer: pyannote.audio speaker diarization on the whole (separated) audio."""

from __future__ import annotations

import asyncio

import numpy as np
from ray import serve

from speakerscribe.devices import torch_device
from speakerscribe.diarization.diarizer import diarize_request, load_diarizer, segmentation_model
from speakerscribe.diarization.overlap import OverlapDetector
from speakerscribe.memory import start_heap_trimmer
from speakerscribe.stage_settings import DiarizerSettings
from speakerscribe.types import Diarization, DiarizationOptions


@serve.deployment(
    ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=8, max_queued_requests=128
)
class Diarizer:
    def __init__(self, settings: DiarizerSettings):
        self.settings = settings
        start_heap_trimmer(settings.heap_trim_interval_s)
        device = torch_device(settings.device)
        self.model = load_diarizer(
            settings.pipeline,
            token=settings.hf_token,
            cache_dir=settings.model_cache_dir,
            device=device,
            cpu_threads=settings.cpu_threads,
        )
        segmentation = segmentation_model(self.model)
        self.overlap_detector = (
            None
            if segmentation is None
            else OverlapDetector(segmentation, device=device, sub_batches=self.model.sub_batches)
        )
        # pyannote pipelines keep per-call state: one call at a time per replica.
        self._lock = asyncio.Lock()

    async def diarize(self, audio: np.ndarray, options: DiarizationOptions) -> Diarization:
        """Turns, enrolled speakers named, overlapped speech when asked for."""
        async with self._lock:
            return await asyncio.to_thread(
                diarize_request,
                self.model,
                audio,
                options,
                known_speaker_threshold=self.settings.known_speaker_threshold,
                overlap_detector=self.overlap_detector,
            )

    async def embed(self, audio: np.ndarray) -> np.ndarray:
        """A speaker embedding of one clip: live streams match their speakers with these.

        Short and frequent, so it does not wait behind a whole-file diarization.
        """
        return await asyncio.to_thread(self.model.embed, audio)

    def ready(self) -> bool:
        return True
