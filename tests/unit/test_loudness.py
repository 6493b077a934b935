"""Loudness: quiet audio raised by its loud frames, whatever the silence around them."""

from __future__ import annotations

import numpy as np
import pytest

from speakerscribe.loudness import (
    MAX_GAIN_DB,
    MIN_SPEECH_LEVEL_DB,
    SOUND_FRAME_S,
    raised_to_level,
    raising_gain,
    sounding_frames,
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


@pytest.mark.parametrize("amplitude", [3e-4, 3e-3])
def test_quiet_audio_is_raised_to_the_level(amplitude):
    raised = raised_to_level(_talk_and_silence(amplitude))
    assert raised.dtype == np.float32
    assert speech_level_db(raised) == pytest.approx(MIN_SPEECH_LEVEL_DB, abs=0.1)


def test_louder_audio_and_silence_come_back_as_they_are():
    for audio in (
        _talk_and_silence(0.5),
        _talk_and_silence(10 ** (MIN_SPEECH_LEVEL_DB / 20) * np.sqrt(2)),  # at the level
        np.zeros(16000, dtype=np.float32),
        np.zeros(0, dtype=np.float32),
    ):
        assert raised_to_level(audio) is audio


def test_the_gain_is_bounded():
    faint = _talk_and_silence(1e-7)
    assert 20 * np.log10(raising_gain(faint)) == pytest.approx(MAX_GAIN_DB)


def test_sparse_loud_speech_is_not_raised_past_full_scale():
    audio = _talk_and_silence(0.5, talking=0.05)  # 0.5 s of loud speech in 10 s of quiet
    audio += np.float32(1e-5)
    assert np.abs(raised_to_level(audio)).max() <= 1.0


def test_digital_silence_is_no_sound_but_room_tone_and_quiet_talk_are():
    """A tone at -23 dBFS, then room tone about 50 dB under it, then exact zeros; the same
    recording 40 dB quieter keeps the same frames, since silence is under its own level."""
    second = round(1 / SOUND_FRAME_S)
    rng = np.random.default_rng(0)
    audio = _talk_and_silence(0.1, talking=0.4)
    audio[4 * 16000 : 7 * 16000] = rng.normal(0, 0.1 * 10 ** (-50 / 20), 3 * 16000)
    frames = sounding_frames(audio)
    assert len(frames) == 10 * second
    assert frames[: 7 * second].all() and not frames[7 * second :].any()
    assert np.array_equal(sounding_frames(audio * np.float32(0.01)), frames)


def test_audio_without_a_level_is_all_sound():
    assert sounding_frames(np.zeros(16000, dtype=np.float32)).all()
    assert sounding_frames(np.zeros(0, dtype=np.float32)).size == 0
