"""VocalSeparator: keep the voice, drop the music (demucs, or an offline soft mask)."""

from __future__ import annotations

import asyncio

import numpy as np
from ray import serve

from speakerscribe.devices import torch_device, use_torch_cpu_threads
from speakerscribe.memory import start_heap_trimmer
from speakerscribe.separation import load_separator
from speakerscribe.stage_settings import SeparatorSettings


@serve.deployment(
    ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=8, max_queued_requests=128
)
class VocalSeparator:
    def __init__(self, settings: SeparatorSettings):
        start_heap_trimmer(settings.heap_trim_interval_s)
        device = torch_device(settings.device)
        use_torch_cpu_threads(device, settings.cpu_threads)
        self.model = load_separator(settings.model, repo=settings.repo, device=device)
        self._lock = asyncio.Lock()

    async def separate(self, audio: np.ndarray) -> np.ndarray:
        async with self._lock:
            return await asyncio.to_thread(self.model, audio)

    def ready(self) -> bool:
        return True
