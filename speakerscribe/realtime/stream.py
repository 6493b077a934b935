"""The streaming audio front end: resampling, VAD, the utterance buffer, stable partials.

Each keeps its state between frames, so a stream is processed as it arrives and gives
what one pass over the whole recording would.
"""

from __future__ import annotations

import numpy as np
import soxr
from faster_whisper.vad import get_vad_model

from speakerscribe.text import normalize_text
from speakerscribe.types import SAMPLE_RATE

VAD_WINDOW = 512
"""Silero VAD at 16 kHz scores 512-sample (32 ms) windows."""
VAD_CONTEXT = 64
WINDOW_MS = VAD_WINDOW * 1000 // SAMPLE_RATE
MANUAL_SPEECH_THRESHOLD = 0.5
"""Without turn detection the VAD still finds pauses to cut long buffers at, and tells
whether a buffer holds speech worth a partial decode; it uses Silero's default."""


class StreamingResampler:
    """PCM at the session rate → 16 kHz; soxr keeps its filter state between frames,
    so frame edges leave no clicks and the output length never drifts."""

    def __init__(self, input_rate: int):
        self.input_rate = input_rate
        self._stream = (
            soxr.ResampleStream(input_rate, SAMPLE_RATE, 1, dtype="float32")
            if input_rate != SAMPLE_RATE
            else None
        )

    def push(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return samples
        return self._stream.resample_chunk(samples, last=last)


class StreamingVad:
    """Silero VAD (faster-whisper's ONNX model) scored window by window across frames.

    Carrying the LSTM state and the 64-sample context gives exactly the probabilities
    of one pass over the whole stream. The model is shared; the state is per stream.
    """

    def __init__(self):
        self._model = get_vad_model()
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(VAD_CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)

    @property
    def pending_samples(self) -> int:
        return self._pending.shape[0]

    def push(self, samples: np.ndarray, flush: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Whole windows ``(k, 512)`` and their speech probabilities; a partial window
        waits for the next call unless ``flush`` pads it with silence."""
        data = np.concatenate([self._pending, samples]) if self._pending.size else samples
        if flush and data.shape[0] % VAD_WINDOW:
            data = np.pad(data, (0, VAD_WINDOW - data.shape[0] % VAD_WINDOW))
        count = data.shape[0] // VAD_WINDOW
        self._pending = data[count * VAD_WINDOW :].copy()
        if count == 0:
            return np.zeros((0, VAD_WINDOW), np.float32), np.zeros(0, np.float32)
        windows = data[: count * VAD_WINDOW].reshape(count, VAD_WINDOW).astype(np.float32)
        contexts = np.concatenate([self._context[None], windows[:-1, -VAD_CONTEXT:]])
        probabilities, self._h, self._c = self._model.session.run(
            None,
            {"input": np.concatenate([contexts, windows], axis=1), "h": self._h, "c": self._c},
        )
        self._context = windows[-1, -VAD_CONTEXT:].copy()
        return windows, np.asarray(probabilities, dtype=np.float32).reshape(-1)


class WindowBuffer:
    """The most recent VAD windows of the stream in a fixed, preallocated array.

    Positions are absolute window indices since the stream began, so times stay valid
    while old audio is dropped from the front.
    """

    def __init__(self, capacity_windows: int):
        self.capacity = capacity_windows
        self._audio = np.zeros(capacity_windows * VAD_WINDOW, dtype=np.float32)
        self._probabilities = np.zeros(capacity_windows, dtype=np.float32)
        self.first = 0
        self.count = 0

    @property
    def end(self) -> int:
        return self.first + self.count

    def push(self, window: np.ndarray, probability: float) -> None:
        if self.count == self.capacity:
            raise OverflowError("realtime audio buffer is full")  # the session cuts before this
        self._audio[self.count * VAD_WINDOW : (self.count + 1) * VAD_WINDOW] = window
        self._probabilities[self.count] = probability
        self.count += 1

    def drop_before(self, position: int) -> None:
        drop = min(max(position - self.first, 0), self.count)
        if drop == 0:
            return
        keep = self.count - drop
        self._audio[: keep * VAD_WINDOW] = self._audio[drop * VAD_WINDOW : self.count * VAD_WINDOW]
        self._probabilities[:keep] = self._probabilities[drop : self.count]
        self.first += drop
        self.count = keep

    def audio(self, start: int, end: int) -> np.ndarray:
        a, b = start - self.first, end - self.first
        return self._audio[a * VAD_WINDOW : b * VAD_WINDOW].copy()

    def probabilities(self, start: int, end: int) -> np.ndarray:
        return self._probabilities[start - self.first : end - self.first]


def longest_pause_middle(silent: np.ndarray) -> int | None:
    """Index of the middle of the longest run of ``True`` (the latest on ties), or None."""
    if not silent.any():
        return None
    edges = np.diff(np.concatenate([[0], silent.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    lengths = ends - starts
    best = len(lengths) - 1 - int(np.argmax(lengths[::-1]))
    return int((starts[best] + ends[best]) // 2)


class LocalAgreement:
    """Stable partial text: a word is final once two successive decodes agree on it and
    everything before it (LocalAgreement-2, Macháček et al., 2023). Append-only."""

    def __init__(self) -> None:
        self.emitted: list[str] = []
        self._previous: list[str] = []

    def update(self, text: str) -> str:
        """The next hypothesis → the delta to send ('' when nothing new is stable)."""
        words = text.split()
        keys, previous = (
            [normalize_text(w) for w in words],
            [normalize_text(w) for w in self._previous],
        )
        self._previous = words
        agreed = 0
        while agreed < min(len(keys), len(previous)) and keys[agreed] == previous[agreed]:
            agreed += 1
        done = len(self.emitted)
        if agreed <= done or [normalize_text(w) for w in self.emitted] != keys[:done]:
            return ""  # nothing new, or the decodes moved away from what was sent
        new = words[done:agreed]
        self.emitted.extend(new)
        return (" " if done else "") + " ".join(new)


def _neg_threshold(threshold: float) -> float:
    """Silero's hysteresis: speech ends only once the probability falls this low."""
    return max(threshold - 0.15, 0.01)
