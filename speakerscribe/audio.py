"""Decode any upload once into 16 kHz mono float32, the only form later stages see.

PyAV (bundled FFmpeg, a dependency of faster-whisper) reads wav, flac, mp3, m4a, ogg,
webm, mp4 and more at any sample rate; faster-whisper's ``decode_audio`` already does
the resample and downmix, so we wrap it and turn its failures into typed errors.
"""

from __future__ import annotations

import io

import av
import numpy as np
from faster_whisper.audio import decode_audio as _fw_decode_audio

from speakerscribe.errors import AudioDecodeError, PayloadTooLargeError
from speakerscribe.types import SAMPLE_RATE


def decode_audio_bytes(data: bytes, *, max_duration_s: float | None = None) -> np.ndarray:
    """Bytes of any common audio/video container → 1-D float32 at 16 kHz, mono.

    Raises AudioDecodeError for empty, truncated-beyond-use or non-media input.
    """
    (audio,) = _decode(data, max_duration_s, split_stereo=False)
    return audio


def decode_audio_channels(data: bytes, *, max_duration_s: float | None = None) -> list[np.ndarray]:
    """Left and right channels, each 16 kHz float32, for one-speaker-per-channel recordings.

    Mono input gives two equal channels; more than two channels are mixed down to two
    by FFmpeg's standard downmix.
    """
    return list(_decode(data, max_duration_s, split_stereo=True))


def _decode(data: bytes, max_duration_s: float | None, split_stereo: bool) -> tuple[np.ndarray, ...]:
    if not data:
        raise AudioDecodeError("the uploaded file is empty", param="file")
    try:
        decoded = _fw_decode_audio(io.BytesIO(data), sampling_rate=SAMPLE_RATE, split_stereo=split_stereo)
    except (av.error.FFmpegError, ValueError, IndexError) as error:
        raise AudioDecodeError(
            f"could not decode the uploaded file as audio: {error}", param="file"
        ) from None
    except TypeError:  # np.frombuffer(dtype=None): the container held no audio frames
        raise AudioDecodeError("the uploaded file holds no audio", param="file") from None
    channels = decoded if split_stereo else (decoded,)
    if channels[0].size == 0:
        raise AudioDecodeError("the uploaded file holds no audio samples", param="file")
    duration = channels[0].size / SAMPLE_RATE
    if max_duration_s is not None and duration > max_duration_s:
        raise PayloadTooLargeError(
            f"audio lasts {duration:.0f} s, more than the {max_duration_s:.0f} s this server accepts",
            param="file",
            code="audio_too_long",
        )
    return tuple(
        np.nan_to_num(channel, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32, copy=False)
        for channel in channels
    )


def duration_s(audio: np.ndarray) -> float:
    return round(float(audio.shape[-1]) / SAMPLE_RATE, 3)
