"""Quiet recordings raised to a level the level-sensitive models hear well.

Silero VAD and pyannote's segmentation models (whose input norm gates out chunks under
a fixed level) miss much of a recording far quieter than usual, while any level above
that suits them alike. So audio whose loud frames are under ``MIN_SPEECH_LEVEL_DB`` is
raised to it, and louder audio is left as it is. Whisper's features are level-robust:
it gets the audio as decoded.
"""

from __future__ import annotations

import numpy as np

from speakerscribe.types import SAMPLE_RATE

MIN_SPEECH_LEVEL_DB = -40.0
"""dBFS of the loud 25 ms frames under which audio is raised, for every model that
raises (``load/evaluate_diarization.py --quieter`` scores recordings 10 to 40 dB down,
``--sensitivity`` this value at ±20%)."""
MAX_GAIN_DB = 40.0
"""Quieter than this under the level is noise, not a far-away talker."""
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


def raising_gain(audio: np.ndarray, level_db: float | None = None) -> float:
    """The factor (at least 1, at most ``MAX_GAIN_DB``) that lifts ``audio`` to ``level_db``
    (``MIN_SPEECH_LEVEL_DB``, read at each call, when not given).

    1.0 for audio at or above the level (within half a decibel) and for silence. No
    sample is taken past full scale: where speech is under a tenth of a recording, its
    loud frames are the silence's, and the speech itself may already be loud.
    """
    level_db = MIN_SPEECH_LEVEL_DB if level_db is None else level_db
    level = speech_level_db(audio)
    if not np.isfinite(level) or level >= level_db - 0.5:
        return 1.0
    peak = max(float(audio.max()), -float(audio.min()))
    return float(min(10.0 ** (min(level_db - level, MAX_GAIN_DB) / 20.0), max(1.0, 1.0 / peak)))


def raised_to_level(audio: np.ndarray, level_db: float | None = None) -> np.ndarray:
    """``audio`` lifted to ``level_db`` (a copy), or ``audio`` itself where it is not quieter."""
    gain = raising_gain(audio, level_db)
    return audio if gain == 1.0 else audio * np.float32(gain)


SILENCE_UNDER_LEVEL_DB = 70.0
"""Frames this far under the recording's speech level are silence, never speech: the
digital silence of a gated call, an edited recording or clips joined with gaps. Room
tone and breath sit 20-50 dB under speech, and even a studio's floor about 60
(``load/evaluate_diarization.py --sensitivity`` sweeps this value at ±20%)."""
SOUND_FRAME_S = 0.01


def sounding_frames(audio: np.ndarray) -> np.ndarray:
    """Per 10 ms frame, whether it holds any sound (is not silence as defined above).

    Audio with no silence in it gives all ``True``; so does silent audio, where the
    level itself is undefined.
    """
    frame = round(SOUND_FRAME_S * SAMPLE_RATE)
    usable = len(audio) // frame * frame
    frames = audio[:usable].reshape(-1, frame)
    energy = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / frame
    level = speech_level_db(audio)
    if not np.isfinite(level):
        return np.ones(len(frames), dtype=bool)
    floor = 10.0 ** ((level - SILENCE_UNDER_LEVEL_DB) / 10.0)
    return energy > floor
