"""Transcriber: faster-whisper, batching ≤30 s pieces of all requests into one model call."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

import numpy as np
from ray import serve

from speakerscribe.settings import Settings
from speakerscribe.transcription import BatchTranscriber, DecodeOptions, load_whisper_model
from speakerscribe.types import Segment

logger = logging.getLogger("ray.serve")


@serve.deployment(
    ray_actor_options={"num_cpus": 1},
    max_ongoing_requests=64,  # ≥ max_batch_size × max_concurrent_batches, so batches can fill
    health_check_period_s=10,
)
class Transcriber:
    def __init__(self, settings: Settings):
        self.settings = settings
        model = load_whisper_model(
            settings.whisper_model,
            device=settings.whisper_device,
            compute_type=settings.whisper_compute_type,
            cpu_threads=settings.whisper_cpu_threads,
            download_root=settings.model_cache_dir / "whisper",
        )
        self.core = BatchTranscriber(model)
        self.model_calls = 0
        self.pieces_served = 0
        self.largest_batch = 0
        self.reconfigure(
            {"max_batch_size": settings.max_batch_size, "batch_wait_timeout_s": settings.batch_wait_timeout_s}
        )

    def reconfigure(self, user_config: dict) -> None:
        """``user_config`` from serve_config.yaml: batch size and wait change without a restart."""
        if "max_batch_size" in user_config:
            self._batched.set_max_batch_size(int(user_config["max_batch_size"]))
        if "batch_wait_timeout_s" in user_config:
            self._batched.set_batch_wait_timeout_s(float(user_config["batch_wait_timeout_s"]))

    async def transcribe(self, piece: np.ndarray, options: DecodeOptions) -> list[Segment]:
        """One piece (≤ 30 s, 16 kHz) → its segments, piece-relative times."""
        result = await self._batched(piece, options)
        if isinstance(result, Exception):
            raise result
        return result.segments

    async def detect_language(self, audio: np.ndarray) -> str:
        language, _ = await asyncio.to_thread(self.core.detect_language, audio)
        return language

    def is_multilingual(self) -> bool:
        return self.core.is_multilingual

    def stats(self) -> dict:
        """Counters the tests and benchmarks read to see batching at work."""
        return {
            "model_calls": self.model_calls,
            "pieces_served": self.pieces_served,
            "largest_batch": self.largest_batch,
        }

    def ready(self) -> bool:
        return True

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.05)
    async def _batched(self, pieces: list[np.ndarray], options: list[DecodeOptions]) -> list:
        """Group the batch by decoding options; one model call per group, off the event loop."""
        groups: dict[DecodeOptions, list[int]] = defaultdict(list)
        for index, option in enumerate(options):
            groups[option].append(index)
        results: list = [None] * len(pieces)
        for option, indices in groups.items():
            outputs = await asyncio.to_thread(self.core.transcribe, [pieces[i] for i in indices], option)
            self.model_calls += 1
            self.pieces_served += len(indices)
            self.largest_batch = max(self.largest_batch, len(indices))
            for index, output in zip(indices, outputs):
                results[index] = output
        return results
