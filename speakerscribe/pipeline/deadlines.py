"""Stage deadlines: each stage call of a request is bounded, and the bound grows with the
audio, so a long file is slow rather than stuck; a replica lost mid-call is a 503."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from speakerscribe.errors import OverloadedError, StageTimeoutError
from speakerscribe.pipeline.stages import is_lost_replica
from speakerscribe.types import SAMPLE_RATE

T = TypeVar("T")


class StageDeadlines:
    def __init__(self, base_s: float, per_audio_s: float):
        self.base_s = base_s
        self.per_audio_s = per_audio_s

    def for_audio(self, num_samples: int) -> float:
        """Seconds one stage may take on ``num_samples`` of audio."""
        return self.base_s + self.per_audio_s * num_samples / SAMPLE_RATE

    async def within(
        self, stage: str, awaitable: Awaitable[T], num_samples: int, budget: float | None = None
    ) -> T:
        """Await a stage under its deadline (504), and turn a lost replica into a 503."""
        budget = self.for_audio(num_samples) if budget is None else budget
        try:
            return await asyncio.wait_for(awaitable, timeout=max(budget, 0.001))
        except TimeoutError:
            raise StageTimeoutError(
                f"{stage} took longer than its {budget:.0f} s deadline"
            ) from None
        except Exception as error:
            if is_lost_replica(error):
                raise OverloadedError(
                    f"a {stage} replica failed while serving this request; retry shortly",
                    code="replica_failed",
                ) from None
            raise
