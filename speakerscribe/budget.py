"""An audio budget per replica: decoded seconds in flight, admitted before they are decoded.

Upload size says little about cost: a 729 KB FLAC of four hours of silence decodes to
0.9 GB of float32. So each ingress replica admits at most ``capacity_s`` decoded seconds at
once, counted from the container's declared duration before the decode starts and grown
as the decode goes (a container can understate its length, or not declare one). A request
past the budget is a 503 with ``Retry-After``; background jobs wait their turn instead.
One request longer than the whole budget is admitted when nothing else is in flight, so
every upload under ``max_audio_duration_s`` can run.
"""

from __future__ import annotations

import asyncio
import io
import threading

import av

from speakerscribe.errors import OverloadedError


class AudioBudgetExceeded(OverloadedError):
    code = "audio_budget_exceeded"


def declared_duration_s(data: bytes) -> float | None:
    """The container's own statement of its length, read from its headers; None if absent."""
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            if container.duration:
                return container.duration / av.time_base
            for stream in container.streams.audio:
                if stream.duration and stream.time_base:
                    return float(stream.duration * stream.time_base)
    except (av.error.FFmpegError, ValueError, IndexError):
        return None  # the decode itself reports what is wrong with the file
    return None


class AudioBudget:
    """Decoded seconds in flight on this replica, shared by its requests (thread-safe)."""

    def __init__(self, capacity_s: float):
        self.capacity_s = capacity_s
        self.in_flight_s = 0.0
        self._lock = threading.Lock()
        self._freed = asyncio.Event()

    def reserve(self, seconds: float) -> Reservation:
        """Admit ``seconds`` now, or raise AudioBudgetExceeded (503)."""
        reservation = Reservation(self)
        reservation.grow_to(seconds)
        return reservation

    async def reserve_waiting(self, seconds: float, poll_s: float = 0.5) -> Reservation:
        """Admit ``seconds`` once they fit (background work queues instead of failing)."""
        while True:
            try:
                return self.reserve(seconds)
            except AudioBudgetExceeded:
                self._freed.clear()
                try:
                    await asyncio.wait_for(self._freed.wait(), poll_s)
                except TimeoutError:
                    pass

    def _take(self, seconds: float, held: float) -> None:
        """Add ``seconds`` for a request that holds ``held`` already; refuse past capacity
        unless that request is alone."""
        with self._lock:
            others = self.in_flight_s - held
            if others > 0 and self.in_flight_s + seconds > self.capacity_s:
                raise AudioBudgetExceeded(
                    f"this replica is decoding {self.in_flight_s / 3600:.1f} h of audio already "
                    f"(budget {self.capacity_s / 3600:.1f} h); retry shortly",
                )
            self.in_flight_s += seconds

    def _give(self, seconds: float) -> None:
        with self._lock:
            self.in_flight_s = max(0.0, self.in_flight_s - seconds)
        try:
            asyncio.get_running_loop().call_soon_threadsafe(self._freed.set)
        except RuntimeError:  # no loop in this thread: waiters poll
            self._freed.set()


class Reservation:
    """One request's share of the budget; grows as its decode finds more audio."""

    def __init__(self, budget: AudioBudget):
        self._budget = budget
        self.seconds = 0.0
        self._released = False

    def grow_to(self, seconds: float) -> None:
        """Hold at least ``seconds``; AudioBudgetExceeded if the extra does not fit."""
        if self._released or seconds <= self.seconds:
            return
        self._budget._take(seconds - self.seconds, held=self.seconds)
        self.seconds = seconds

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._budget._give(self.seconds)
