"""The audio budget: decoded seconds in flight per replica, admitted before the decode."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
import soundfile as sf

from speakerscribe.budget import AudioBudget, AudioBudgetExceeded, declared_duration_s
from speakerscribe.pipeline.service import TranscriptionService
from speakerscribe.protocol import TranscriptionRequest
from speakerscribe.settings import load_settings
from speakerscribe.types import SAMPLE_RATE


def flac(seconds: float) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(int(seconds * SAMPLE_RATE), np.float32), SAMPLE_RATE, format="FLAC")
    return buffer.getvalue()


def test_requests_fit_until_the_budget_is_spent():
    budget = AudioBudget(100.0)
    first, second = budget.reserve(60.0), budget.reserve(40.0)
    with pytest.raises(AudioBudgetExceeded) as refused:
        budget.reserve(1.0)
    assert refused.value.status_code == 503 and refused.value.code == "audio_budget_exceeded"
    first.release()
    first.release()  # idempotent
    assert budget.in_flight_s == 40.0
    budget.reserve(60.0)
    second.release()


def test_one_request_longer_than_the_budget_runs_alone():
    budget = AudioBudget(100.0)
    alone = budget.reserve(500.0)
    with pytest.raises(AudioBudgetExceeded):
        budget.reserve(1.0)
    alone.release()
    assert budget.in_flight_s == 0.0


def test_a_decode_that_finds_more_audio_than_declared_grows_or_stops():
    budget = AudioBudget(100.0)
    other = budget.reserve(50.0)
    understated = budget.reserve(10.0)
    understated.grow_to(50.0)
    with pytest.raises(AudioBudgetExceeded):
        understated.grow_to(51.0)
    other.release()
    understated.grow_to(400.0)  # alone now
    assert budget.in_flight_s == 400.0


def test_background_work_waits_for_room():
    budget = AudioBudget(100.0)

    async def run():
        held = budget.reserve(90.0)
        waiting = asyncio.ensure_future(budget.reserve_waiting(50.0, poll_s=5.0))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        held.release()
        return await asyncio.wait_for(waiting, 2.0)

    assert asyncio.run(run()).seconds == 50.0


def test_the_declared_length_is_read_before_decoding():
    assert declared_duration_s(flac(120.0)) == pytest.approx(120.0, abs=0.1)
    assert declared_duration_s(b"not audio") is None


class NoStages:
    async def separate(self, audio):
        return audio

    async def transcribe(self, audio, options):
        return []

    async def diarize(self, audio, options):
        raise AssertionError("not asked for")

    async def detect_language(self, audio, model):
        return "en"

    async def embed(self, audio):
        raise AssertionError("not asked for")


def test_an_upload_past_the_budget_is_refused_before_it_is_decoded():
    service = TranscriptionService(load_settings(audio_budget_s=3600.0), NoStages())
    held = service.budget.reserve(3000.0)
    with pytest.raises(AudioBudgetExceeded):
        asyncio.run(service.transcribe(flac(1800.0), TranscriptionRequest()))
    assert service.budget.in_flight_s == 3000.0  # nothing of the refused upload is held
    held.release()
    result = asyncio.run(service.transcribe(flac(1800.0), TranscriptionRequest()))
    assert result.duration == pytest.approx(1800.0) and service.budget.in_flight_s == 0.0
