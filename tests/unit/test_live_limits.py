"""Live session limits: message size, pace against real time, sessions per key."""

from __future__ import annotations

import pytest

from speakerscribe.live_limits import (
    LiveLimitError,
    RealTimePace,
    SessionCounter,
    check_message_size,
)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_audio_may_run_ahead_by_the_allowance_and_it_refills_at_real_time():
    clock = Clock()
    pace = RealTimePace(10.0, clock)
    pace.spend(9.0)  # a quick burst within the allowance
    clock.now = 5.0
    pace.spend(5.0)  # 1 s left, 5 s refilled
    with pytest.raises(LiveLimitError) as raised:
        pace.spend(2.0)
    assert (raised.value.code, raised.value.close_code) == ("audio_too_fast", 1008)


def test_a_long_pause_does_not_bank_more_than_the_allowance():
    clock = Clock()
    pace = RealTimePace(10.0, clock)
    clock.now = 3600.0
    pace.spend(10.0)
    with pytest.raises(LiveLimitError):
        pace.spend(0.5)


def test_real_time_audio_never_hits_the_limit():
    clock = Clock()
    pace = RealTimePace(1.0, clock)
    for second in range(1, 600):
        clock.now = float(second)
        pace.spend(1.0)


def test_oversized_messages_are_refused_with_1009():
    check_message_size(1000, 1000)
    with pytest.raises(LiveLimitError) as raised:
        check_message_size(1001, 1000)
    assert (raised.value.code, raised.value.close_code) == ("message_too_large", 1009)


def test_sessions_are_counted_per_key():
    sessions = SessionCounter(2)
    sessions.open("a")
    sessions.open("a")
    sessions.open("b")
    with pytest.raises(LiveLimitError) as raised:
        sessions.open("a")
    assert (raised.value.code, raised.value.close_code) == ("too_many_sessions", 1013)
    sessions.close("a")
    sessions.open("a")
