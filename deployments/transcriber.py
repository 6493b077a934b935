"""Transcriber: faster-whisper, batching ≤30 s pieces of all requests into one model call.

The default model is loaded at start; the others in ``whisper_models`` are loaded on
first use through Serve model multiplexing (requests for them are routed to replicas
that hold them, and each replica evicts the least recently used). Batches are formed
across models but every model call decodes pieces of one model with one set of options.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

import numpy as np
from ray import serve
from ray.serve import metrics

from speakerscribe.errors import ModelNotFoundError
from speakerscribe.memory import start_heap_trimmer
from speakerscribe.stage_settings import TranscriberSettings
from speakerscribe.types import SAMPLE_RATE, Segment
from speakerscribe.whisper.decoding import BatchTranscriber
from speakerscribe.whisper.loading import load_whisper_model
from speakerscribe.whisper.options import DecodeOptions, PieceTranscript

logger = logging.getLogger("ray.serve")


class _BatchedDecode(Protocol):
    """``Transcriber._batched`` as ``@serve.batch`` leaves it: called once per piece, and
    carrying its batch queue's setters. Ray's stubs type only batches of one argument
    list and know none of the setters."""

    def __call__(
        self, piece: np.ndarray, options: DecodeOptions, model: BatchTranscriber, queued_at: float
    ) -> Awaitable[PieceTranscript | Exception]: ...

    def set_max_batch_size(self, new_max_batch_size: int) -> None: ...

    def set_batch_wait_timeout_s(self, new_batch_wait_timeout_s: float) -> None: ...


class _BatchDecorator(Protocol):
    def __call__(self, method: Callable[..., Awaitable[list[Any]]], /) -> _BatchedDecode: ...


@serve.deployment(
    ray_actor_options={"num_cpus": 1},
    max_ongoing_requests=64,  # ≥ max_batch_size × max_concurrent_batches, so batches can fill
    max_queued_requests=4096,  # pieces: one 4-hour upload alone sends ~500
    health_check_period_s=10,
)
class Transcriber:
    def __init__(self, settings: TranscriberSettings):
        self.settings = settings
        start_heap_trimmer(settings.heap_trim_interval_s)
        self.core = self._load(settings.model)

        async def load_other(model_id: str) -> BatchTranscriber:  # a plain function: Serve keeps
            return await self._load_other_model(model_id)  # its LRU cache on it, per replica

        multiplexed = serve.multiplexed(max_num_models_per_replica=settings.max_models_per_replica)
        self._load_other = multiplexed(load_other)
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
        self.model_seconds = 0.0
        self.pieces_by_model: dict[str, int] = defaultdict(int)
        self.pieces_served = 0
        self.largest_batch = 0
        self.longest_wait_s = 0.0
        self._busy_until = 0.0  # expected end of the running model call (monotonic)
        self.reconfigure(
            {
                "max_batch_size": settings.max_batch_size,
                "batch_wait_timeout_s": settings.batch_wait_timeout_s,
            }
        )

    def _load(self, source: str) -> BatchTranscriber:
        model = load_whisper_model(
            source,
            device=self.settings.device,
            compute_type=self.settings.compute_type,
            cpu_threads=self.settings.cpu_threads,
            workers=self.settings.workers,
            download_root=self.settings.model_cache_dir / "whisper",
        )
        return BatchTranscriber(model, pack_short_pieces=self.settings.pack_short_pieces)

    async def _load_other_model(self, model_id: str) -> BatchTranscriber:
        """Serve's multiplexing calls this on a replica's first request for ``model_id``."""
        logger.info("loading Whisper model %r", model_id)
        return await asyncio.to_thread(self._load, self.settings.other_models[model_id])

    async def _model(self, model_id: str) -> BatchTranscriber:
        if model_id in ("", self.settings.model_id):
            return self.core
        if model_id not in self.settings.other_models:
            raise ModelNotFoundError(f"model {model_id!r} is not served here", param="model")
        return await self._load_other(model_id)

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
        model = await self._model(options.model)
        self._adapt_batch_wait()
        result = await self._batched(piece, options, model, time.monotonic())
        if isinstance(result, Exception):
            raise result
        return result.segments

    async def detect_language(self, audio: np.ndarray, model_id: str = "") -> str:
        """Language of the first 30 s; "en" at once for English-only models."""
        model = await self._model(model_id)
        if not model.is_multilingual:
            return "en"
        language, _ = await asyncio.to_thread(model.detect_language, audio)
        return language

    def stats(self) -> dict:
        """Counters the tests and benchmarks read to see batching at work."""
        return {
            "model_calls": self.model_calls,
            "model_seconds": round(self.model_seconds, 3),
            "pieces_served": self.pieces_served,
            "pieces_by_model": dict(self.pieces_by_model),
            "largest_batch": self.largest_batch,
            "longest_wait_s": round(self.longest_wait_s, 3),
            "pack_short_pieces": self.core.pack_short_pieces,
        }

    def ready(self) -> bool:
        return True

    @cast(_BatchDecorator, serve.batch(max_batch_size=8, batch_wait_timeout_s=0.05))
    async def _batched(
        self,
        pieces: list[np.ndarray],
        options: list[DecodeOptions],
        models: list[BatchTranscriber],
        queued_at: list[float],
    ) -> list:
        """Group the batch by decoding options (model included); one model call per group,
        off the event loop. Each piece carries its loaded model, so an eviction between
        routing and decoding cannot pull it away.
        """
        groups: dict[DecodeOptions, list[int]] = defaultdict(list)
        for index, option in enumerate(options):
            groups[option].append(index)
        results: list = [None] * len(pieces)
        for option, indices in groups.items():
            started = time.monotonic()
            for index in indices:
                self._piece_wait.observe(started - queued_at[index])
                self.longest_wait_s = max(self.longest_wait_s, started - queued_at[index])
            model = models[indices[0]]
            self._busy_until = started + model.call_duration.expected(len(indices))
            outputs = await asyncio.to_thread(
                model.transcribe, [pieces[i] for i in indices], option
            )
            call_s = time.monotonic() - started
            self._busy_until = 0.0
            model.call_duration.observe(len(indices), call_s)
            self._model_call_seconds.observe(call_s)
            self._batch_size.observe(len(indices))
            self._audio_seconds.inc(sum(pieces[i].shape[0] for i in indices) / SAMPLE_RATE)
            self.model_calls += 1
            self.model_seconds += call_s
            self.pieces_served += len(indices)
            self.pieces_by_model[option.model or self.settings.model_id] += len(indices)
            self.largest_batch = max(self.largest_batch, len(indices))
            for index, output in zip(indices, outputs, strict=True):
                results[index] = output
        return results
