"""Limits on live WebSocket sessions, so one client cannot take a replica's cores or memory.

- A message larger than ``max_message_bytes`` ends the session (close code 1009).
- Audio may run ahead of real time by at most ``max_ahead_s``: a token bucket that fills at
  one second per second up to that much, and each message's audio spends from it. A client
  that replays a recording quickly gets its burst; one that pushes hours in minutes is
  stopped (close code 1008) instead of keeping the Transcriber busy for everyone else.
- At most ``max_sessions`` sessions at once per API key on a replica (close code 1013,
  "try again later").
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from speakerscribe.errors import InvalidRequestError

CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TRY_AGAIN_LATER = 1013


class LiveLimitError(InvalidRequestError):
    """A session broke a limit; it gets an ``error`` event and this close code."""

    def __init__(self, message: str, *, code: str, close_code: int):
        super().__init__(message, code=code)
        self.close_code = close_code


class RealTimePace:
    """How far a stream's audio may run ahead of the wall clock (a token bucket)."""

    def __init__(self, max_ahead_s: float, clock: Callable[[], float] = time.monotonic):
        self.max_ahead_s = max_ahead_s
        self._clock = clock
        self._allowance = max_ahead_s
        self._at = clock()

    def spend(self, audio_s: float) -> None:
        now = self._clock()
        self._allowance = min(self.max_ahead_s, self._allowance + (now - self._at)) - audio_s
        self._at = now
        if self._allowance < 0:
            raise LiveLimitError(
                f"audio is arriving faster than real time by more than {self.max_ahead_s:g} s; "
                f"send it at the speed it was recorded",
                code="audio_too_fast",
                close_code=CLOSE_POLICY_VIOLATION,
            )


def check_message_size(size: int, limit: int) -> None:
    if size > limit:
        raise LiveLimitError(
            f"a message of {size} bytes is over the {limit} byte limit; send audio in smaller "
            f"appends (about a second each)",
            code="message_too_large",
            close_code=CLOSE_MESSAGE_TOO_BIG,
        )


class SessionCounter:
    """Open live sessions per key on this replica."""

    def __init__(self, max_sessions: int):
        self.max_sessions = max_sessions
        self._open: Counter[str] = Counter()

    def open(self, key: str) -> None:
        if self._open[key] >= self.max_sessions:
            raise LiveLimitError(
                f"this key has {self._open[key]} live sessions open already (the limit is "
                f"{self.max_sessions}); close one first",
                code="too_many_sessions",
                close_code=CLOSE_TRY_AGAIN_LATER,
            )
        self._open[key] += 1

    def close(self, key: str) -> None:
        self._open[key] -= 1
        if self._open[key] <= 0:
            del self._open[key]
