"""Transcriber: faster-whisper, batching ≤30 s pieces of all requests into one model call."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

import numpy as np
from ray import serve
from ray.serve import metrics

from speakerscribe.settings import Settings
from speakerscribe.transcription import BatchTranscriber, DecodeOptions, load_whisper_model
from speakerscribe.types import SAMPLE_RATE, Segment

logger = logging.getLogger("ray.serve")


@serve.deployment(
    ray_actor_options={"num_cpus": 1},
    max_ongoing_requests=64,  # ≥ max_batch_size × max_concurrent_batches, so batches can fill
    max_queued_requests=4096,  # pieces: one 4-hour upload alone sends ~500
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
        pack = settings.pack_short_pieces
        self.core = BatchTranscriber(model, pack_short_pieces=model.model.device == "cpu" if pack is None else pack)
        self._batch_size = metrics.Histogram(
            "speakerscribe_transcriber_batch_size",
            description="Pieces decoded together in one Whisper model call.",
            boundaries=[1, 2, 4, 8, 16, 32, 64],
        )
        self._piece_wait = metrics.Histogram(
            "speakerscribe_transcriber_piece_wait_seconds",
            description="Time a piece waits for its batch's model call to start.",
            boundaries=[0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30],
        )
        self._model_call_seconds = metrics.Histogram(
            "speakerscribe_transcriber_model_call_seconds",
            description="Wall time of one batched Whisper model call.",
            boundaries=[0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
        )
        self._audio_seconds = metrics.Counter(
            "speakerscribe_transcriber_audio_seconds_total",
            description="Seconds of audio decoded by Whisper.",
        )
        self.model_calls = 0
        self.pieces_served = 0
        self.largest_batch = 0
        self.longest_wait_s = 0.0
        self._busy_until = 0.0  # expected end of the running model call (monotonic)
        self._last_call_s = 0.0
        self.reconfigure(
            {"max_batch_size": settings.max_batch_size, "batch_wait_timeout_s": settings.batch_wait_timeout_s}
        )

    def _adapt_batch_wait(self) -> None:
        """Let a batch keep filling while the model is busy with the previous one.

        Serve forms a batch as soon as its wait ends, even when the model is still busy
        (the batch then queues for ``max_concurrent_batches``), so under load a short
        wait gives a string of tiny batches. While a model call runs, the wait is
        stretched to that call's expected end; when the model is idle it is the
        configured one, so a lone request pays nothing.
        """
        remaining = self._busy_until - time.monotonic()
        self._batched.set_batch_wait_timeout_s(max(self.batch_wait_timeout_s, remaining))

    def reconfigure(self, user_config: dict) -> None:
        """``user_config`` from serve_config.yaml: batch size and wait change without a restart."""
        if "max_batch_size" in user_config:
            self._batched.set_max_batch_size(int(user_config["max_batch_size"]))
        if "batch_wait_timeout_s" in user_config:
            self.batch_wait_timeout_s = float(user_config["batch_wait_timeout_s"])
            self._batched.set_batch_wait_timeout_s(self.batch_wait_timeout_s)
        if user_config.get("pack_short_pieces") is not None:
            self.core.pack_short_pieces = bool(user_config["pack_short_pieces"])

    async def transcribe(self, piece: np.ndarray, options: DecodeOptions) -> list[Segment]:
        """One piece (≤ 30 s, 16 kHz) → its segments, piece-relative times."""
        self._adapt_batch_wait()
        result = await self._batched(piece, options, time.monotonic())
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
            "longest_wait_s": round(self.longest_wait_s, 3),
            "pack_short_pieces": self.core.pack_short_pieces,
        }

    def ready(self) -> bool:
        return True

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.05)
    async def _batched(
        self, pieces: list[np.ndarray], options: list[DecodeOptions], queued_at: list[float]
    ) -> list:
        """Group the batch by decoding options; one model call per group, off the event loop."""
        groups: dict[DecodeOptions, list[int]] = defaultdict(list)
        for index, option in enumerate(options):
            groups[option].append(index)
        results: list = [None] * len(pieces)
        for option, indices in groups.items():
            started = time.monotonic()
            for index in indices:
                self._piece_wait.observe(started - queued_at[index])
                self.longest_wait_s = max(self.longest_wait_s, started - queued_at[index])
            self._busy_until = started + self._last_call_s
            outputs = await asyncio.to_thread(self.core.transcribe, [pieces[i] for i in indices], option)
            self._last_call_s = time.monotonic() - started
            self._busy_until = 0.0
            self._model_call_seconds.observe(self._last_call_s)
            self._batch_size.observe(len(indices))
            self._audio_seconds.inc(sum(pieces[i].shape[0] for i in indices) / SAMPLE_RATE)
            self.model_calls += 1
            self.pieces_served += len(indices)
            self.largest_batch = max(self.largest_batch, len(indices))
            for index, output in zip(indices, outputs):
                results[index] = output
        return results
