"""How long the next model call will take, which sets how long the Transcriber lets a
batch fill."""

from __future__ import annotations

import math


class CallDuration:
    """Expected seconds of a model call of ``n`` pieces: a moving average per worker round.

    The Transcriber lets the next batch fill until the running call's expected end. A
    call's time grows with its pieces over the workers, so the estimate does too: after a
    large call, the batch behind a small one does not wait as long as the large one took.
    """

    def __init__(self, workers: int = 1, smoothing: float = 0.3):
        self.workers = max(1, workers)
        self.smoothing = smoothing
        self.seconds_per_round = 0.0

    def rounds(self, pieces: int) -> int:
        return max(1, math.ceil(pieces / self.workers))

    def expected(self, pieces: int) -> float:
        return self.seconds_per_round * self.rounds(pieces)

    def observe(self, pieces: int, seconds: float) -> None:
        sample = seconds / self.rounds(pieces)
        if self.seconds_per_round == 0.0:
            self.seconds_per_round = sample
        else:
            self.seconds_per_round += self.smoothing * (sample - self.seconds_per_round)
