"""One level for the models that hear a quiet recording worse than the same one louder.

Silero VAD and pyannote's segmentation models (whose input norm gates out chunks under
a fixed level) miss quiet speech, so their audio is scaled by its loud frames first.
Whisper's own features are level-robust and get the audio as decoded.
"""

from __future__ import annotations

import numpy as np

SPEECH_LEVEL_DB = -30.0
"""The level (dBFS, loud 25 ms frames) the bundled diarizer brings its audio to."""
QUIET_SPEECH_DB = -45.0
"""Voice activity detection raises audio quieter than this to it and leaves the rest as
it is: where Whisper's pieces are cut moves its text, so audio it hears well keeps them."""
MAX_GAIN_DB = 40.0
"""Quieter than this under the target is noise, not a far-away talker."""
_LEVEL_FRAME = 400  # 25 ms at 16 kHz
_LEVEL_PERCENTILE = 90.0


def speech_level_db(audio: np.ndarray) -> float:
    """The level of the loud frames (the 90th percentile of 25 ms frame energies), in dBFS.

    Loud frames are speech wherever a tenth of the recording is speech, so the figure
    does not depend on how much silence surrounds it. ``-inf`` for silent audio.
    """
    usable = len(audio) // _LEVEL_FRAME * _LEVEL_FRAME
    frames = audio[:usable].reshape(-1, _LEVEL_FRAME) if usable else audio.reshape(1, -1)
    if frames.size == 0:
        return float("-inf")
    energy = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / frames.shape[1]
    loud = float(np.percentile(energy, _LEVEL_PERCENTILE))
    return 10.0 * np.log10(loud) if loud > 0 else float("-inf")


def gain_to_level(
    audio: np.ndarray,
    level_db: float = SPEECH_LEVEL_DB,
    *,
    raise_only: bool = False,
    max_gain_db: float = MAX_GAIN_DB,
) -> float:
    """The factor that puts ``audio``'s loud frames at ``level_db`` (at most ``max_gain_db``).

    1.0 within half a decibel of the target, for silence, and, with ``raise_only``, for
    audio already louder than the target.
    """
    level = speech_level_db(audio)
    if not np.isfinite(level):
        return 1.0
    gain_db = min(level_db - level, max_gain_db)
    if abs(gain_db) < 0.5 or (raise_only and gain_db < 0):
        return 1.0
    return float(10.0 ** (gain_db / 20.0))


def at_speech_level(audio: np.ndarray, level_db: float = SPEECH_LEVEL_DB) -> np.ndarray:
    """``audio`` scaled to ``level_db`` (a copy), or ``audio`` itself where no gain is due.

    Voice activity (Silero) and segmentation models hear a quiet recording less well
    than the same recording louder, so they get one level whatever the source's.
    """
    gain = gain_to_level(audio, level_db)
    return audio if gain == 1.0 else audio * np.float32(gain)
