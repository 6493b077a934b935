"""Loudness: audio brought to one level by its loud frames, whatever the silence around them."""

from __future__ import annotations

import numpy as np
import pytest

from speakerscribe.loudness import (
    MAX_GAIN_DB,
    SPEECH_LEVEL_DB,
    at_speech_level,
    gain_to_level,
    speech_level_db,
)


def _talk_and_silence(amplitude: float, talking: float = 0.3) -> np.ndarray:
    """10 s: a tone for ``talking`` of it, silence for the rest."""
    t = np.arange(10 * 16000) / 16000
    tone = amplitude * np.sin(2 * np.pi * 220 * t)
    return np.where(t < 10 * talking, tone, 0.0).astype(np.float32)


@pytest.mark.parametrize("talking", [0.15, 0.5, 1.0])
def test_speech_level_is_the_loud_frames_whatever_the_silence_around_them(talking):
    audio = _talk_and_silence(0.1, talking)
    assert speech_level_db(audio) == pytest.approx(20 * np.log10(0.1 / np.sqrt(2)), abs=0.1)


@pytest.mark.parametrize("amplitude", [1e-3, 1e-2, 0.5])
def test_audio_is_brought_to_the_speech_level(amplitude):
    leveled = at_speech_level(_talk_and_silence(amplitude))
    assert leveled.dtype == np.float32
    assert speech_level_db(leveled) == pytest.approx(SPEECH_LEVEL_DB, abs=0.1)


def test_silence_and_audio_at_the_level_come_back_as_they_are():
    silence = np.zeros(16000, dtype=np.float32)
    assert at_speech_level(silence) is silence
    assert at_speech_level(np.zeros(0, dtype=np.float32)).size == 0
    already = at_speech_level(_talk_and_silence(0.01))
    assert at_speech_level(already) is already


def test_the_gain_is_bounded_and_raise_only_leaves_loud_audio_alone():
    faint = _talk_and_silence(1e-6)
    assert 20 * np.log10(gain_to_level(faint)) == pytest.approx(MAX_GAIN_DB)
    loud = _talk_and_silence(0.5)
    assert gain_to_level(loud, raise_only=True) == 1.0
    assert gain_to_level(loud) < 1.0
