"""Decode any upload once into 16 kHz float32 (mono, or left/right), the only form later stages see.

PyAV (bundled FFmpeg, a dependency of faster-whisper) reads wav, flac, mp3, m4a, ogg,
webm, mp4 and more at any sample rate and channel count. This follows faster-whisper's
``decode_audio`` (skip undecodable frames, resample with FFmpeg) with three changes a
server needs: float output (24-bit sources keep their precision), NaN/inf samples zeroed
*before* resampling (FFmpeg would turn them into full-scale clicks), and decoding stops
as soon as the audio is longer than the server accepts.
"""

from __future__ import annotations

import gc
import io
import itertools
from collections.abc import Callable

import av
import numpy as np

from speakerscribe.errors import AudioDecodeError, PayloadTooLargeError
from speakerscribe.types import SAMPLE_RATE

Progress = Callable[[float], None]
"""Called with the seconds decoded so far, as the decode goes; it may raise to stop it."""


def decode_audio_bytes(
    data: bytes, *, max_duration_s: float | None = None, on_decoded: Progress | None = None
) -> np.ndarray:
    """Bytes of any common audio/video container → 1-D float32 at 16 kHz, mono.

    Raises AudioDecodeError for empty, truncated-beyond-use or non-media input, and
    PayloadTooLargeError past ``max_duration_s``.
    """
    return _decode(data, max_duration_s, channels=1, on_decoded=on_decoded)[0]


def decode_audio_channels(
    data: bytes, *, max_duration_s: float | None = None, on_decoded: Progress | None = None
) -> list[np.ndarray]:
    """Left and right channels, each 16 kHz float32, for one-speaker-per-channel recordings.

    Mono input gives two equal channels; of more than two, the first two are taken.
    """
    return list(_decode(data, max_duration_s, channels=2, on_decoded=on_decoded))


def _decode(
    data: bytes, max_duration_s: float | None, channels: int, on_decoded: Progress | None = None
) -> np.ndarray:
    if not data:
        raise AudioDecodeError("the uploaded file is empty", param="file")
    max_samples = int(max_duration_s * SAMPLE_RATE) if max_duration_s else None
    # Channels are mixed here, before FFmpeg resamples: its float downmix is not
    # normalised (stereo comes out 3 dB hot and clips), and unusual layouts (8 channels
    # without a channel mask) crash its resampler.
    layout = "mono" if channels == 1 else "stereo"
    resampler = av.AudioResampler(format="flt", layout=layout, rate=SAMPLE_RATE)
    total = 0
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioDecodeError("the uploaded file has no audio stream", param="file")
            declared = container.duration / av.time_base if container.duration else None
            if declared is not None and max_duration_s is not None:
                declared = min(declared, max_duration_s)
            sink = _Samples(
                None if declared is None else (int(declared * SAMPLE_RATE) + SAMPLE_RATE) * channels
            )
            # a generator, not a list: the decoded frames are never all held at once
            for mixed in itertools.chain(
                _mixed_frames(_frames(container), channels, layout), [None]
            ):
                for out in resampler.resample(mixed):
                    samples = out.to_ndarray()  # packed flt: (1, n * channels)
                    sink.write(samples.reshape(-1))
                    total += samples.shape[1] // channels
                    if on_decoded is not None:
                        on_decoded(total / SAMPLE_RATE)
                    if max_samples is not None and total > max_samples:
                        raise PayloadTooLargeError(
                            f"audio lasts more than the {max_duration_s:.0f} s this server accepts",
                            param="file",
                            code="audio_too_long",
                        )
    except (av.error.FFmpegError, ValueError, IndexError) as error:
        raise AudioDecodeError(
            f"could not decode the uploaded file as audio: {error}", param="file"
        ) from None
    finally:
        del resampler
        gc.collect()  # PyAV's resampler graphs are only freed by the collector (faster-whisper#390)
    if total == 0:
        raise AudioDecodeError("the uploaded file holds no audio samples", param="file")
    audio = sink.samples().reshape(-1, channels).T
    if channels > 1:
        audio = np.ascontiguousarray(audio)
    return np.clip(audio, -1.0, 1.0, out=audio)


class _Samples:
    """Decoded samples in one array allocated from the container's declared length (filled in
    place: the signal is held once), else gathered in blocks and joined once at the end."""

    def __init__(self, expected: int | None):
        # np.empty maps pages lazily: an overstated length costs address space, not memory
        self._array = np.empty(expected, np.float32) if expected else None
        self._blocks: list[np.ndarray] = []
        self.size = 0

    def write(self, samples: np.ndarray) -> None:
        end = self.size + samples.size
        if self._array is not None and end <= self._array.size:
            self._array[self.size : end] = samples
        else:
            if self._array is not None:  # the container understated its length
                self._blocks.append(self._array[: self.size])
                self._array = None
            self._blocks.append(samples)
        self.size = end

    def samples(self) -> np.ndarray:
        if self._array is not None:
            return self._array[: self.size]
        return np.concatenate(self._blocks) if self._blocks else np.zeros(0, np.float32)


def _mixed_frames(frames, channels: int, layout: str, block: int = 1 << 16):
    """Decoded frames → float32 frames of ``layout``, NaN/inf zeroed, in blocks of ~``block``
    samples (few, large frames keep the resampler fast)."""
    pending: list[np.ndarray] = []
    size, rate = 0, None
    for frame in frames:
        if rate is not None and (frame.sample_rate != rate or size >= block):
            yield _frame(pending, layout, rate)
            pending, size = [], 0
        rate = frame.sample_rate
        planar = _to_float_planar(frame)
        np.nan_to_num(planar, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        if channels == 1:
            mixed = planar.mean(axis=0, keepdims=True, dtype=np.float32)
        elif planar.shape[0] == 1:
            mixed = np.repeat(planar, 2, axis=0)
        else:
            mixed = planar[:2]
        pending.append(mixed)
        size += mixed.shape[1]
    if pending:
        assert rate is not None  # set by the first frame
        yield _frame(pending, layout, rate)


def _frame(arrays: list[np.ndarray], layout: str, rate: int) -> av.AudioFrame:
    out = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(np.concatenate(arrays, axis=1)), format="fltp", layout=layout
    )
    out.sample_rate = rate
    return out


def _to_float_planar(frame: av.AudioFrame) -> np.ndarray:
    """Any sample format → (channels, samples) float32 in [-1, 1]."""
    array: np.ndarray = frame.to_ndarray()
    count = (
        frame.layout.nb_channels
        if hasattr(frame.layout, "nb_channels")
        else len(frame.layout.channels)
    )
    if not frame.format.is_planar:
        array = array.reshape(-1, count).T
    if array.dtype == np.uint8:
        return (array.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / float(np.iinfo(array.dtype).max + 1)
    return array.astype(np.float32)


def _frames(container):
    """Audio frames of the first audio stream, skipping frames FFmpeg cannot decode."""
    iterator = container.decode(audio=0)
    while True:
        try:
            frame = next(iterator)
        except StopIteration:
            return
        except av.error.InvalidDataError:
            continue
        frame.pts = None  # resample regardless of broken timestamps
        yield frame


def duration_s(audio: np.ndarray) -> float:
    return round(float(audio.shape[-1]) / SAMPLE_RATE, 3)
