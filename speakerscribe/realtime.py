"""Live transcription over OpenAI's Realtime transcription protocol, free of Ray.

One ``RealtimeTranscriptionSession`` per WebSocket. The endpoint hands it client events
(parsed JSON) and raw PCM16 frames; it answers through the injected ``emit`` with server
events shaped like ``openai.types.realtime``. Model work goes through injected async
callables (``transcribe``, ``embed``), so the same core runs against Ray deployments in
the server and against in-process models or fakes in tests.

Flow: PCM16 at the session rate → soxr stream resampler → 16 kHz → streaming Silero VAD
(faster-whisper's ONNX model, state carried between frames) in 32 ms windows → a
fixed-size buffer holding only the open utterance plus a short pre-roll. Speech start
and stop come from the VAD (``server_vad``) or only from client commits
(``turn_detection: null``). Every ~1 s of new speech a partial decode runs (at most one
at a time); words that two successive partials agree on go out as ``delta`` events
(LocalAgreement-2). A committed utterance is decoded once more in full for the final
``completed`` event; with diarization on each segment is embedded and clustered online
with the speakers seen so far in this stream (``SpeakerTracker``). Utterances are capped
below Whisper's 30 s window by cutting at the longest recent pause.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import soxr
from faster_whisper.vad import get_vad_model
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from speakerscribe.alignment import letter_label
from speakerscribe.errors import SpeechServerError
from speakerscribe.protocol import (
    blank_is_none,
    clean_speaker_names,
    known_language,
    speaker_pairs_mismatch,
)
from speakerscribe.scoring import normalize_text
from speakerscribe.speakers import decode_reference
from speakerscribe.transcription import DecodeOptions
from speakerscribe.types import SAMPLE_RATE, Segment

logger = logging.getLogger(__name__)

TranscribeFn = Callable[[np.ndarray, DecodeOptions], Awaitable[list[Segment]]]
EmbedFn = Callable[[np.ndarray], Awaitable["np.ndarray | None"]]
EmitFn = Callable[[dict], Awaitable[None]]
DetectLanguageFn = Callable[[np.ndarray, str], Awaitable[str]]

OPENAI_INPUT_RATE = 24_000
"""OpenAI's only PCM rate; other rates are our extension (see ``RealtimeSessionConfig``)."""

VAD_WINDOW = 512
"""Silero VAD at 16 kHz scores 512-sample (32 ms) windows."""
VAD_CONTEXT = 64
WINDOW_MS = VAD_WINDOW * 1000 // SAMPLE_RATE
MIN_COMMIT_MS = 100
"""OpenAI refuses to commit less than 100 ms of audio."""
MAX_PREFIX_PADDING_MS = 5_000
MAX_SILENCE_DURATION_MS = 10_000
MANUAL_SPEECH_THRESHOLD = 0.5
"""Without turn detection the VAD still finds pauses to cut long buffers at, and tells
whether a buffer holds speech worth a partial decode; it uses Silero's default."""

DEFAULT_SPEAKER_THRESHOLD = 0.6
"""Cosine to a speaker's nearest sub-centroid from which a segment joins and updates it:
CAM++ scores a 1-3 s segment against its own speaker's centroid 0.64 and above, against
another speaker's up to 0.62 (two voices on one phone line)."""
NEW_SPEAKER_THRESHOLD = 0.5
"""Below this against every speaker a segment is clearly another voice and opens one;
between it and ``DEFAULT_SPEAKER_THRESHOLD`` it only takes the nearest label."""
DEFAULT_KNOWN_SPEAKER_THRESHOLD = 0.6
"""Cosine to an enrolled reference from which a segment takes its name: CAM++ scores the
same person 0.65-0.86 on clean clips, other people at most 0.43 across recordings."""
MERGE_THRESHOLD = 0.8
"""Two speakers whose mean voices come this close are one, as the batch pipeline merges."""
SUBCENTROID_THRESHOLD = 0.7
"""A joining segment this unlike each of its speaker's sub-centroids starts another: the
same voice in another condition (pitch, loudness, line) stays one speaker."""
MAX_SUBCENTROIDS = 3
"""Sub-centroids per speaker: a few conditions, without one speaker covering every voice."""
MIN_NEW_SPEAKER_S = 1.0
"""Shorter segments embed too noisily to open, confirm or update a speaker: they join
the nearest one."""
CONFIRM_SPEAKER_THRESHOLD = 0.7
"""A pending voice becomes a speaker when a later segment matches it this closely (and
closer than any speaker): two segments of one voice; two voices on one line stay under."""
MAX_PENDING_VOICES = 4
"""Unconfirmed voices kept, the latest ones."""


# --- session configuration ---------------------------------------------------------------


class ServerVad(BaseModel):
    """OpenAI's ``server_vad`` turn detection, decided by Silero VAD."""

    model_config = ConfigDict(extra="ignore")  # create_response, idle_timeout_ms: no meaning here

    type: Literal["server_vad"] = "server_vad"
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    prefix_padding_ms: int = Field(default=300, ge=0, le=MAX_PREFIX_PADDING_MS)
    silence_duration_ms: int = Field(default=500, ge=0, le=MAX_SILENCE_DURATION_MS)


class RealtimeSessionConfig(BaseModel):
    """What a client can set with ``session.update``, flattened from OpenAI's nesting."""

    model_config = ConfigDict(extra="forbid")

    input_rate: int = Field(default=OPENAI_INPUT_RATE, ge=8_000, le=96_000)
    model: str | None = None
    language: str | None = None
    prompt: str | None = None
    turn_detection: ServerVad | None = Field(default_factory=ServerVad)
    enable_speaker_diarization: bool = False
    include: list[Literal["item.input_audio_transcription.logprobs"]] | None = None
    # enrolled voices, as for uploads: names and audio data URLs, one-to-one
    known_speaker_names: list[str] = Field(default_factory=list)
    known_speaker_references: list[str] = Field(default_factory=list, repr=False)

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        return known_language(value)

    @field_validator("model", "prompt")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return blank_is_none(value)

    def to_openai(self, session_id: str, model: str | None) -> dict[str, Any]:
        """The ``session`` object of ``session.created``/``session.updated`` (GA shape)."""
        turn_detection = self.turn_detection.model_dump() if self.turn_detection else None
        return {
            "type": "transcription",
            "id": session_id,
            "object": "realtime.transcription_session",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": self.input_rate},
                    "noise_reduction": None,
                    "transcription": {
                        "model": model,
                        "language": self.language,
                        "prompt": self.prompt or "",
                    },
                    "turn_detection": turn_detection,
                }
            },
            "include": self.include,
            "enable_speaker_diarization": self.enable_speaker_diarization,
            "known_speaker_names": self.known_speaker_names,  # the references are not echoed
        }


CONFIG_PARAMS = {
    "input_rate": "session.audio.input.format.rate",
    "model": "session.audio.input.transcription.model",
    "language": "session.audio.input.transcription.language",
    "prompt": "session.audio.input.transcription.prompt",
    "turn_detection": "session.audio.input.turn_detection",
    "enable_speaker_diarization": "session.enable_speaker_diarization",
    "include": "session.include",
    "known_speaker_names": "session.known_speaker_names",
    "known_speaker_references": "session.known_speaker_references",
}
"""Our flat config field → where the client put it, for error ``param``s."""


class ClientEventError(Exception):
    """A client event we cannot honour; becomes an ``error`` server event."""

    def __init__(self, message: str, *, code: str = "invalid_value", param: str | None = None):
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


def session_changes(session: Any) -> dict[str, Any]:
    """The fields a ``session.update`` (GA nesting) or ``transcription_session.update``
    (beta flat shape) sets; absent keys keep their value, explicit ``null`` clears."""
    if not isinstance(session, dict):
        raise ClientEventError("session must be an object", param="session")
    if session.get("type", "transcription") != "transcription":
        raise ClientEventError(
            "only transcription sessions are served here; set session.type to 'transcription'",
            param="session.type",
        )
    changes: dict[str, Any] = {}
    audio = _object(session.get("audio"), "session.audio")
    audio_input = _object(audio.get("input"), "session.audio.input")
    if "format" in audio_input:
        changes["input_rate"] = _rate_of_format(audio_input["format"])
    if "input_audio_format" in session:  # beta
        if session["input_audio_format"] not in (None, "pcm16"):
            raise ClientEventError(
                f"unsupported input_audio_format {session['input_audio_format']!r}; use 'pcm16'",
                param="session.input_audio_format",
            )
        changes["input_rate"] = OPENAI_INPUT_RATE
    for source, key, where in (
        (audio_input, "transcription", "session.audio.input"),
        (session, "input_audio_transcription", "session"),  # beta
    ):
        transcription = _object(source.get(key), f"{where}.{key}")
        for name in ("model", "language", "prompt"):
            if name in transcription:
                changes[name] = transcription[name]
        if "turn_detection" in source:
            changes["turn_detection"] = _turn_detection(source["turn_detection"])
    for name in (
        "include",
        "enable_speaker_diarization",
        "known_speaker_names",
        "known_speaker_references",
    ):
        if name in session:
            changes[name] = session[name] if session[name] is not None else []
    if "known_speaker_names" in changes or "known_speaker_references" in changes:
        changes.setdefault("known_speaker_names", [])
        changes.setdefault("known_speaker_references", [])
    return changes


def _object(value: Any, param: str) -> dict:
    """A nested settings object; null means 'nothing to change here'."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ClientEventError(f"{param} must be an object", param=param)
    return value


def _rate_of_format(audio_format: Any) -> Any:
    audio_format = _object(audio_format, "session.audio.input.format")
    kind = audio_format.get("type", "audio/pcm")
    if kind != "audio/pcm":
        raise ClientEventError(
            f"unsupported audio format {kind!r}; only 'audio/pcm' (PCM16 little-endian mono)",
            param="session.audio.input.format.type",
        )
    return audio_format.get("rate", OPENAI_INPUT_RATE)


def _turn_detection(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, dict) and value.get("type", "server_vad") != "server_vad":
        raise ClientEventError(
            f"turn_detection type {value.get('type')!r} is not supported; use 'server_vad' or null",
            param="session.audio.input.turn_detection.type",
        )
    return value


# --- streaming audio front end -----------------------------------------------------------


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


# --- partial text and speakers -----------------------------------------------------------


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


class _Voice:
    """Running sums of unit embeddings: up to ``MAX_SUBCENTROIDS`` sub-centroids, the whole."""

    def __init__(self, unit: np.ndarray):
        self.sums = [unit.copy()]
        self.total = unit.copy()

    def centroids(self) -> np.ndarray:
        sums = np.stack(self.sums)
        return sums / np.linalg.norm(sums, axis=1, keepdims=True).clip(min=1e-12)

    def mean(self) -> np.ndarray:
        return self.total / max(float(np.linalg.norm(self.total)), 1e-12)

    def similarity(self, unit: np.ndarray) -> float:
        """Cosine to the nearest sub-centroid."""
        return float((self.centroids() @ unit).max())

    def add(self, vector: np.ndarray) -> None:
        """A unit embedding (or another voice's sub-centroid sum) joins the nearest
        sub-centroid, or starts one if it is unlike all and there is room."""
        similarities = self.centroids() @ (vector / max(float(np.linalg.norm(vector)), 1e-12))
        nearest = int(np.argmax(similarities))
        if similarities[nearest] < SUBCENTROID_THRESHOLD and len(self.sums) < MAX_SUBCENTROIDS:
            self.sums.append(vector.copy())
        else:
            self.sums[nearest] = self.sums[nearest] + vector
        self.total = self.total + vector

    def absorb(self, other: _Voice) -> None:
        total = self.total + other.total
        for part in other.sums:
            self.add(part)
        self.total = total


class SpeakerTracker:
    """Online clustering of one stream's voices into speakers, relabel-free.

    Each speaker holds a few sub-centroids. A segment joins the speaker whose nearest
    sub-centroid is most similar at ``threshold`` or above; a long one clearly unlike
    every speaker (below ``new_speaker_threshold``) opens a new one. One in between
    takes the nearest label without changing that voice and waits as a pending voice:
    a later segment closer to it than to any speaker, at ``confirm_threshold``, makes it
    a new speaker. Short segments never open, confirm or update a speaker. Speakers
    whose mean voices converge (``merge_threshold``) merge into the older one: labels
    already given stay as they were, later segments of either get the older label.

    At most ``max_speakers`` identities; once full, a segment goes to the closest one.
    Enrolled voices (``enroll``) are matched first, at ``known_threshold``.
    """

    def __init__(
        self,
        threshold: float = DEFAULT_SPEAKER_THRESHOLD,
        max_speakers: int = 20,
        known_threshold: float = DEFAULT_KNOWN_SPEAKER_THRESHOLD,
        *,
        new_speaker_threshold: float = NEW_SPEAKER_THRESHOLD,
        confirm_threshold: float = CONFIRM_SPEAKER_THRESHOLD,
        merge_threshold: float = MERGE_THRESHOLD,
        min_new_speaker_s: float = MIN_NEW_SPEAKER_S,
    ):
        self.threshold = threshold
        self.new_speaker_threshold = min(new_speaker_threshold, threshold)
        self.confirm_threshold = confirm_threshold
        self.merge_threshold = merge_threshold
        self.min_new_speaker_s = min_new_speaker_s
        self.max_speakers = max_speakers
        self.known_threshold = known_threshold
        # label → voice, in the order the labels were given; None: named before any voice
        self._voices: dict[str, _Voice | None] = {}
        self._pending: list[_Voice] = []
        self._letters = 0
        self._known_names: list[str] = []
        self._known = np.zeros((0, 0), np.float32)
        self.last: str | None = None

    def __len__(self) -> int:
        """Speakers (letters) of the stream now, merged ones counted once."""
        return len(self._voices)

    def enroll(self, voices: dict[str, np.ndarray]) -> None:
        """Enrolled voices by name (replacing earlier ones): a segment whose voice matches
        one at ``known_threshold`` or above takes its name; the others get letters."""
        self._known_names = list(voices)
        units = [v / np.linalg.norm(v) for v in voices.values()]
        self._known = np.stack(units) if units else np.zeros((0, 0), np.float32)

    def assign(self, embedding: np.ndarray, seconds: float = float("inf")) -> str:
        """The speaker of a segment of ``seconds`` with this voice embedding."""
        unit = embedding / np.linalg.norm(embedding)
        if self._known_names:
            similarities = self._known @ unit
            best_known = int(np.argmax(similarities))
            if similarities[best_known] >= self.known_threshold:
                self.last = self._known_names[best_known]
                return self.last
        long = seconds >= self.min_new_speaker_s
        voiced = {label: voice for label, voice in self._voices.items() if voice is not None}
        if not voiced:  # the first voice of the stream, or a letter given without one
            label = next(iter(self._voices), None) or self._new_label()
            self._voices[label] = _Voice(unit) if long else None
            self.last = label
            return label
        labels = list(voiced)
        scores = [voiced[label].similarity(unit) for label in labels]
        best, score = labels[int(np.argmax(scores))], max(scores)
        if long and len(self._voices) < self.max_speakers:
            pending = [voice.similarity(unit) for voice in self._pending]
            if pending and max(pending) >= max(self.confirm_threshold, score):
                voice = self._pending.pop(int(np.argmax(pending)))
                voice.add(unit)
                best = self._open(voice)
                best = self._merge(best)
                self.last = best
                return best
            if score < self.new_speaker_threshold:
                self.last = self._open(_Voice(unit))
                return self.last
        if long and score >= self.threshold:
            voiced[best].add(unit)
            best = self._merge(best)
        elif long:
            self._pending = [*self._pending, _Voice(unit)][-MAX_PENDING_VOICES:]
        self.last = best
        return best

    def fallback(self) -> str:
        """The previous speaker; the first one (without a voice yet) if nobody spoke."""
        if self.last is None:
            self.last = self._new_label()
            self._voices[self.last] = None  # the next embedding fills it
        return self.last

    def _new_label(self) -> str:
        self._letters += 1
        return letter_label(self._letters - 1)

    def _open(self, voice: _Voice) -> str:
        label = self._new_label()
        self._voices[label] = voice
        return label

    def _merge(self, label: str) -> str:
        """Merge converged speakers, each into the older one; what ``label`` is now."""
        while True:
            voiced = [(name, voice) for name, voice in self._voices.items() if voice is not None]
            if len(voiced) < 2:
                return label
            means = np.stack([voice.mean() for _, voice in voiced])
            similarity = np.triu(means @ means.T, k=1)
            older, newer = np.unravel_index(int(np.argmax(similarity)), similarity.shape)
            if similarity[older, newer] < self.merge_threshold:
                return label
            (kept, voice), (dropped, other) = voiced[older], voiced[newer]
            voice.absorb(other)
            del self._voices[dropped]
            if label == dropped:
                label = kept
            if self.last == dropped:
                self.last = kept


# --- the session -------------------------------------------------------------------------


@dataclass
class _Utterance:
    item_id: str
    start_window: int
    audio: np.ndarray
    diarize: bool

    @property
    def start_s(self) -> float:
        return self.start_window * VAD_WINDOW / SAMPLE_RATE

    @property
    def duration_s(self) -> float:
        return self.audio.shape[0] / SAMPLE_RATE


@dataclass
class _Decoded:
    """A final decode: Whisper's segments, the speaker-homogeneous pieces, their voices."""

    segments: list[Segment]
    pieces: list[Segment]
    embeddings: list[np.ndarray | None] | None


@dataclass
class _Speculation:
    """A final decode started early in a pause, on the audio so far.

    Server VAD commits only after ``silence_duration_ms`` of pause; decoding during that
    wait takes it off the latency a user feels. If speech resumes, the task is dropped.
    """

    pause_start: int  # the window where the pause began
    end: int  # the decoded audio ends here, a little into the pause
    diarize: bool
    task: asyncio.Task


@dataclass
class _Turn:
    """Where the open utterance stands in the window stream."""

    item_id: str
    start: int | None = None  # first window of the open utterance (prefix included)
    candidate: int | None = None  # VAD crossed the threshold here, not yet long enough
    silence_since: int | None = None
    heard_speech: bool = False
    next_partial: int = 0
    agreement: LocalAgreement = field(default_factory=LocalAgreement)
    speculation: _Speculation | None = None

    def drop_speculation(self) -> None:
        if self.speculation is not None:
            self.speculation.task.cancel()
            self.speculation = None


SENTENCE_ENDS = (".", "?", "!", "。", "？", "！")
TURN_PAUSE_S = 0.3


def sentence_segments(segments: list[Segment], turn_pause_s: float = TURN_PAUSE_S) -> list[Segment]:
    """Whisper segments cut after each sentence, and at pauses between words.

    Speakers mostly take turns between sentences, while one Whisper segment often spans
    several turns; a sentence is the unit that gets one speaker. Whisper's punctuation
    varies with the audio around it ("Diane in New Jersey, and I'm Sheila"), so a pause
    of ``turn_pause_s`` inside a sentence, where a turn can change too, also cuts.
    """
    pieces: list[Segment] = []
    for segment in segments:
        if not segment.words:
            pieces.append(segment)
            continue
        sentence = []
        for index, word in enumerate(segment.words):
            sentence.append(word)
            last = index == len(segment.words) - 1
            if (
                last
                or word.word.rstrip().endswith(SENTENCE_ENDS)
                or segment.words[index + 1].start - word.end >= turn_pause_s
            ):
                pieces.append(
                    replace(
                        segment,
                        id=len(pieces),
                        start=sentence[0].start,
                        end=max(sentence[-1].end, sentence[0].start),
                        text="".join(w.word for w in sentence),
                        tokens=[],
                        words=sentence,
                    )
                )
                sentence = []
    return pieces


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:22]}"


class RealtimeTranscriptionSession:
    """One live transcription stream: client events in, OpenAI server events out.

    Call ``start()`` once (sends ``session.created``), then ``handle_event`` for every
    client message and ``append_pcm16`` for binary frames, and ``close()`` at the end
    (finalises a pending utterance and waits for every final transcript). Calls must not
    overlap: the endpoint awaits each before reading the next message, which also
    back-pressures a client that sends faster than transcription keeps up.
    """

    def __init__(
        self,
        transcribe: TranscribeFn,
        emit: EmitFn,
        embed: EmbedFn | None = None,
        *,
        config: RealtimeSessionConfig | None = None,
        detect_language: DetectLanguageFn | None = None,
        resolve_model: Callable[[str | None], str] | None = None,
        beam_size: int = 5,
        partial_beam_size: int = 1,
        speaker_threshold: float = DEFAULT_SPEAKER_THRESHOLD,
        max_speakers: int = 20,
        known_speaker_threshold: float = DEFAULT_KNOWN_SPEAKER_THRESHOLD,
        max_known_speakers: int = 4,
        min_speaker_segment_s: float = 1.0,
        max_utterance_s: float = 25.0,
        cut_search_s: float = 10.0,
        long_turn_s: float = 6.0,
        long_turn_silence_ms: int = 250,
        turn_pause_s: float = TURN_PAUSE_S,
        partial_interval_s: float = 1.0,
        min_speech_ms: int = 100,
        max_pending_finals: int = 4,
        speculate_after_ms: int = 160,
        speculate_lead_ms: int = 2_000,
        speculate_below_partial_s: float = 3.0,
    ):
        if max_utterance_s > 29.0:
            raise ValueError("max_utterance_s must leave room inside Whisper's 30 s window")
        self._transcribe = transcribe
        self._emit_callable = emit
        self._embed = embed
        self._detect_language = detect_language
        self._resolve_model = resolve_model
        self.config = config or RealtimeSessionConfig()
        if self.config.enable_speaker_diarization and embed is None:
            raise ValueError("speaker diarization needs an embed callable")
        self.session_id = new_id("sess")
        self.beam_size = beam_size
        self.partial_beam_size = partial_beam_size
        self.min_speaker_segment_s = min_speaker_segment_s
        self._max_utterance = int(max_utterance_s * SAMPLE_RATE) // VAD_WINDOW
        self._cut_search = int(cut_search_s * SAMPLE_RATE) // VAD_WINDOW
        # a turn longer than long_turn_s ends at a shorter pause: its final comes while
        # the talk goes on, and the one after the last word is for a few seconds of
        # audio, not for a 25 s monologue (or a quick back-and-forth with no long pause)
        self._long_turn = int(long_turn_s * SAMPLE_RATE) // VAD_WINDOW
        self._long_turn_silence = max(1, -(-long_turn_silence_ms // WINDOW_MS))
        self.turn_pause_s = turn_pause_s
        self._partial_interval = max(1, int(partial_interval_s * SAMPLE_RATE) // VAD_WINDOW)
        self._last_partial_s = 0.0
        self._min_speech = max(1, -(-min_speech_ms // WINDOW_MS))
        # a pause of speculate_after_ms starts the final decode, but not earlier than
        # speculate_lead_ms before the commit is due: a long silence_duration_ms would
        # otherwise pay a wasted decode for every short pause
        self._speculate_after = max(1, -(-speculate_after_ms // WINDOW_MS))
        self._speculate_lead = speculate_lead_ms // WINDOW_MS
        # ... and only while partials come back quickly: a busy Transcriber computes a
        # dropped speculation anyway (a started batch cannot be cancelled), and under
        # that load the wait it would hide is small beside the queue
        self.speculate_below_partial_s = speculate_below_partial_s
        # the open utterance, or idle pre-roll plus a not-yet-confirmed speech start
        self._buffer = WindowBuffer(
            self._max_utterance + -(-MAX_PREFIX_PADDING_MS // WINDOW_MS) + self._min_speech + 2
        )
        self.speakers = SpeakerTracker(speaker_threshold, max_speakers, known_speaker_threshold)
        self.max_known_speakers = max_known_speakers
        self._resampler = StreamingResampler(self.config.input_rate)
        self._vad = StreamingVad()
        self._turn = _Turn(item_id=new_id("item"))
        self._previous_item_id: str | None = None
        self._language: str | None = None
        self._segment_count = 0
        self._emit_lock = asyncio.Lock()
        self._final_slots = asyncio.Semaphore(max_pending_finals)
        self._finals: set[asyncio.Task] = set()
        self._last_final: asyncio.Task | None = None
        self._partial: asyncio.Task | None = None
        self._closed = False
        self.received_s = 0.0
        """Seconds of audio the client has sent (the ingress holds it to real time)."""

    # --- public API -----------------------------------------------------------------

    @property
    def buffered_samples(self) -> int:
        """16 kHz samples held right now (buffer + the VAD's partial window)."""
        return self._buffer.count * VAD_WINDOW + self._vad.pending_samples

    @property
    def max_buffered_samples(self) -> int:
        """The fixed bound of ``buffered_samples``, whatever the stream's length."""
        return self._buffer.capacity * VAD_WINDOW + VAD_WINDOW

    async def start(self) -> None:
        await self._send("session.created", session=self._session_object())

    async def handle_event(self, event: dict | str | bytes) -> None:
        """One client event (parsed JSON or its text); problems become ``error`` events."""
        client_event_id = None
        try:
            if isinstance(event, (str, bytes)):
                try:
                    event = json.loads(event)
                except ValueError:
                    raise ClientEventError(
                        "the message is not valid JSON", code="invalid_json"
                    ) from None
            if not isinstance(event, dict):
                raise ClientEventError("a client event must be a JSON object", code="invalid_json")
            client_event_id = event.get("event_id")
            kind = event.get("type")
            if kind in ("session.update", "transcription_session.update"):
                await self._update(event.get("session"))
            elif kind == "input_audio_buffer.append":
                await self._append_bytes(_decode_audio_field(event))
            elif kind == "input_audio_buffer.commit":
                await self._client_commit()
            elif kind == "input_audio_buffer.clear":
                self._clear()
                await self._send("input_audio_buffer.cleared")
            else:
                raise ClientEventError(
                    f"Invalid value: {kind!r}. Supported values are: 'session.update', "
                    "'transcription_session.update', 'input_audio_buffer.append', "
                    "'input_audio_buffer.commit' and 'input_audio_buffer.clear'.",
                    param="type",
                )
        except ClientEventError as error:
            await self._send_error(error, client_event_id)

    async def append_pcm16(self, data: bytes) -> None:
        """A binary frame: PCM16 little-endian mono at the session's input rate."""
        try:
            await self._append_bytes(data)
        except ClientEventError as error:
            await self._send_error(error, None)

    async def close(self) -> None:
        """Finalise what is pending: the open utterance is committed and transcribed."""
        if self._closed:
            return
        self._closed = True
        await self._feed(self._resampler.push(np.zeros(0, np.float32), last=True), flush=True)
        if self._turn.start is not None and self._turn.heard_speech:
            if self.config.turn_detection is not None:
                await self._send(
                    "input_audio_buffer.speech_stopped",
                    audio_end_ms=self._buffer.end * WINDOW_MS,
                    item_id=self._turn.item_id,
                )
            await self._commit(self._buffer.end)
        if self._partial is not None:
            self._partial.cancel()
        if self._finals:
            await asyncio.wait(set(self._finals))

    # --- client events --------------------------------------------------------------

    async def _update(self, session: Any) -> None:
        changes = session_changes(session)
        try:
            config = RealtimeSessionConfig.model_validate({**self.config.model_dump(), **changes})
        except ValidationError as error:
            item = error.errors()[0]
            name = str(item["loc"][0]) if item["loc"] else None
            raise ClientEventError(
                item["msg"].removeprefix("Value error, "),
                param=CONFIG_PARAMS.get(name, name) if name is not None else None,
            ) from None
        if config.known_speaker_names:  # naming voices needs them told apart, as for uploads
            config.enable_speaker_diarization = True
        if config.enable_speaker_diarization and self._embed is None:
            raise ClientEventError(
                "speaker diarization is not available on this server",
                param=CONFIG_PARAMS["enable_speaker_diarization"],
            )
        voices = None
        if (config.known_speaker_names, config.known_speaker_references) != (
            self.config.known_speaker_names,
            self.config.known_speaker_references,
        ):
            voices = await self._known_voices(config)
        self._model_id(config.model)  # an unknown model is refused now, not at the first decode
        if config.input_rate != self.config.input_rate:
            await self._feed(self._resampler.push(np.zeros(0, np.float32), last=True))
            self._resampler = StreamingResampler(config.input_rate)
        if config.language != self.config.language:
            self._language = None
        if (config.turn_detection is None) != (self.config.turn_detection is None):
            self._turn.candidate = self._turn.silence_since = None
            self._turn.drop_speculation()
            if config.turn_detection is not None and not self._turn.heard_speech:
                self._turn.start = None  # manual buffer without speech becomes pre-roll
        if voices is not None:  # only once the whole update is known to be good
            self.speakers.enroll(voices)
        self.config = config
        await self._send("session.updated", session=self._session_object())

    async def _known_voices(self, config: RealtimeSessionConfig) -> dict[str, np.ndarray]:
        """Each enrolled name → its reference's voice embedding (errors name the field)."""
        references = config.known_speaker_references
        try:
            names = clean_speaker_names(config.known_speaker_names)
        except ValueError as error:
            raise ClientEventError(str(error), param=CONFIG_PARAMS["known_speaker_names"]) from None
        mismatch = speaker_pairs_mismatch(names, references)
        if mismatch:
            raise ClientEventError(mismatch, param=CONFIG_PARAMS["known_speaker_references"])
        if len(names) > self.max_known_speakers:
            raise ClientEventError(
                f"at most {self.max_known_speakers} known speakers per session",
                param=CONFIG_PARAMS["known_speaker_names"],
            )
        assert self._embed is not None  # checked with enable_speaker_diarization
        voices = {}
        for index, (name, url) in enumerate(zip(names, references, strict=True)):
            try:
                audio = await asyncio.to_thread(decode_reference, url, index)
            except SpeechServerError as error:
                raise ClientEventError(
                    error.message, param=f"session.known_speaker_references[{index}]"
                ) from None
            embedding = await self._embed(audio)
            if embedding is None:
                raise ClientEventError(
                    f"no voice found in known_speaker_references[{index}]",
                    param=f"session.known_speaker_references[{index}]",
                )
            voices[name] = embedding
        return voices

    async def _append_bytes(self, data: bytes) -> None:
        if self._closed:
            raise ClientEventError("the session is closed", code="session_closed")
        if len(data) % 2:
            raise ClientEventError(
                f"audio must be whole PCM16 samples; got an odd number of bytes ({len(data)})",
                param="audio",
            )
        self.received_s += len(data) / 2 / self.config.input_rate
        # about 1 s of input at a time: the VAD's batch and the resampler's output stay small
        step = 2 * self.config.input_rate
        for offset in range(0, len(data), step):
            if offset:
                await asyncio.sleep(0)  # a long append must not starve the other streams
            pcm = np.frombuffer(data[offset : offset + step], dtype="<i2")
            await self._feed(self._resampler.push(pcm.astype(np.float32) / 32768.0))

    async def _client_commit(self) -> None:
        start = self._turn.start
        if start is None or (self._buffer.end - start) * WINDOW_MS < MIN_COMMIT_MS:
            held_ms = 0 if start is None else (self._buffer.end - start) * WINDOW_MS
            raise ClientEventError(
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {held_ms}ms of audio.",
                code="input_audio_buffer_commit_empty",
            )
        await self._commit(self._buffer.end)

    def _clear(self) -> None:
        self._buffer.drop_before(self._buffer.end)
        self._turn.drop_speculation()
        self._turn = _Turn(item_id=new_id("item"))

    # --- audio → turns --------------------------------------------------------------

    async def _feed(self, samples: np.ndarray, flush: bool = False) -> None:
        windows, probabilities = self._vad.push(samples, flush=flush)
        for window, probability in zip(windows, probabilities, strict=True):
            self._buffer.push(window, float(probability))
            if self.config.turn_detection is None:
                await self._manual_window(float(probability))
            else:
                await self._vad_window(float(probability), self.config.turn_detection)
        self._maybe_start_partial()

    async def _manual_window(self, probability: float) -> None:
        """Without turn detection the whole buffer is the utterance until the client commits."""
        turn = self._turn
        if turn.start is None:
            turn.start = self._buffer.first
            turn.next_partial = turn.start + self._partial_interval
        turn.heard_speech |= probability >= MANUAL_SPEECH_THRESHOLD
        if self._buffer.end - turn.start >= self._max_utterance:
            await self._cut_long_utterance(_neg_threshold(MANUAL_SPEECH_THRESHOLD))

    async def _vad_window(self, probability: float, vad: ServerVad) -> None:
        turn, position = self._turn, self._buffer.end - 1  # the window just pushed
        neg_threshold = _neg_threshold(vad.threshold)
        prefix = -(-vad.prefix_padding_ms // WINDOW_MS)
        if turn.start is None:  # idle: wait for enough speech to call it a start
            if turn.candidate is None and probability >= vad.threshold:
                turn.candidate = position
            elif turn.candidate is not None and probability < neg_threshold:
                turn.candidate = None
            if turn.candidate is not None and position - turn.candidate + 1 >= self._min_speech:
                turn.start = max(self._buffer.first, turn.candidate - prefix)
                turn.candidate, turn.silence_since, turn.heard_speech = None, None, True
                turn.next_partial = turn.start + self._partial_interval
                await self._send(
                    "input_audio_buffer.speech_started",
                    audio_start_ms=turn.start * WINDOW_MS,
                    item_id=turn.item_id,
                )
            else:
                keep_from = turn.candidate if turn.candidate is not None else position + 1
                self._buffer.drop_before(keep_from - prefix)
            return
        if probability >= vad.threshold:
            turn.silence_since = None
            turn.drop_speculation()  # speech goes on: the utterance is not over
        elif probability < neg_threshold and turn.silence_since is None:
            turn.silence_since = position
        silence_windows = -(-vad.silence_duration_ms // WINDOW_MS)
        if self._buffer.end - turn.start >= self._long_turn:
            silence_windows = min(silence_windows, self._long_turn_silence)
        paused = 0 if turn.silence_since is None else position + 1 - turn.silence_since
        if paused >= silence_windows:
            await self._send(
                "input_audio_buffer.speech_stopped",
                audio_end_ms=self._buffer.end * WINDOW_MS,
                item_id=turn.item_id,
            )
            await self._commit(self._buffer.end)
        elif self._buffer.end - turn.start >= self._max_utterance:
            await self._cut_long_utterance(neg_threshold)
        elif (
            turn.speculation is None
            and paused >= max(self._speculate_after, silence_windows - self._speculate_lead)
            and self._last_partial_s <= self.speculate_below_partial_s
        ):
            self._speculate(turn)

    def _speculate(self, turn: _Turn) -> None:
        """Start the final decode early in the pause, while VAD waits the pause out."""
        if self._partial is not None and not self._partial.done():
            self._partial.cancel()  # the final will speak for these words
        # up to now, not to the pause's first quiet window: VAD can call the fading end
        # of a word quiet, and Whisper cuts a word short that the audio cuts short
        assert turn.start is not None and turn.silence_since is not None  # a pause in speech
        end = self._buffer.end
        audio = self._buffer.audio(turn.start, end)
        diarize = self.config.enable_speaker_diarization
        task = asyncio.create_task(self._decode_final(audio, diarize))
        turn.speculation = _Speculation(turn.silence_since, end, diarize, task)

    async def _cut_long_utterance(self, neg_threshold: float) -> None:
        """Commit up to the middle of the longest recent pause (else here), keep the rest.

        Without turn detection a stretch with no speech at all is dropped instead: a
        client that streams silence and never commits must not cost a decode per 25 s.
        """
        turn, end = self._turn, self._buffer.end
        assert turn.start is not None  # only an open utterance grows too long
        low = max(turn.start + self._min_speech, end - self._cut_search)
        middle = longest_pause_middle(self._buffer.probabilities(low, end) < neg_threshold)
        cut = end if middle is None else low + middle
        vad_mode = self.config.turn_detection is not None
        if not vad_mode and not self._has_speech(turn.start, cut):
            self._buffer.drop_before(cut)
            turn.start, turn.heard_speech = cut, self._has_speech(cut, end)
            return
        if vad_mode:
            await self._send(
                "input_audio_buffer.speech_stopped",
                audio_end_ms=cut * WINDOW_MS,
                item_id=turn.item_id,
            )
        await self._commit(cut)
        if cut < end:  # the speech goes on as a new item
            self._turn.start = cut
            self._turn.heard_speech = vad_mode or self._has_speech(cut, end)
            self._turn.next_partial = cut + self._partial_interval
            if vad_mode:
                await self._send(
                    "input_audio_buffer.speech_started",
                    audio_start_ms=cut * WINDOW_MS,
                    item_id=self._turn.item_id,
                )

    def _has_speech(self, start: int, end: int) -> bool:
        return bool((self._buffer.probabilities(start, end) >= MANUAL_SPEECH_THRESHOLD).any())

    async def _commit(self, end: int) -> None:
        """Close the open utterance at ``end`` and queue its final decode.

        A decode started early in the pause that ends here is reused: the audio after it is
        all pause, so it has nothing more to say.
        """
        turn = self._turn
        assert turn.start is not None  # only an open utterance is committed
        speculation = turn.speculation
        if speculation is not None and not (
            speculation.pause_start == turn.silence_since  # the pause it began in still holds
            and end >= speculation.end
            and speculation.diarize == self.config.enable_speaker_diarization
        ):
            turn.drop_speculation()
            speculation = None
        turn.speculation = None
        utterance = _Utterance(
            item_id=turn.item_id,
            start_window=turn.start,
            audio=self._buffer.audio(turn.start, end),
            diarize=self.config.enable_speaker_diarization,
        )
        await self._send(
            "input_audio_buffer.committed",
            item_id=turn.item_id,
            previous_item_id=self._previous_item_id,
        )
        self._previous_item_id = turn.item_id
        if self._partial is not None and not self._partial.done():
            self._partial.cancel()  # its words are moot now; Serve drops it if still queued
        self._buffer.drop_before(end)
        self._turn = _Turn(item_id=new_id("item"))
        await self._final_slots.acquire()  # back-pressure when finals fall behind
        previous = self._last_final
        task = asyncio.create_task(
            self._finalize(utterance, previous, speculation.task if speculation else None)
        )
        self._finals.add(task)
        task.add_done_callback(self._finals.discard)
        self._last_final = task

    # --- decoding -------------------------------------------------------------------

    def _maybe_start_partial(self) -> None:
        turn = self._turn
        if (
            self._closed
            or turn.start is None
            or not turn.heard_speech
            or self._buffer.end < turn.next_partial
            or (self._partial is not None and not self._partial.done())
            or turn.silence_since is not None  # maybe the end: keep the model free for the final
        ):
            return
        # Leave the model idle at least half the time, so finals do not queue behind partials
        busy = int(2 * self._last_partial_s * SAMPLE_RATE) // VAD_WINDOW
        turn.next_partial = self._buffer.end + max(self._partial_interval, busy)
        audio = self._buffer.audio(turn.start, self._buffer.end)
        self._partial = asyncio.create_task(self._run_partial(turn, audio))

    async def _run_partial(self, turn: _Turn, audio: np.ndarray) -> None:
        started = time.monotonic()
        try:
            options = await self._options(audio, partial=True)
            started = time.monotonic()
            segments = await self._transcribe(audio, options)
            self._last_partial_s = time.monotonic() - started
        except asyncio.CancelledError:
            # a partial cancelled after waiting this long says as much about the load as a
            # finished one: it spaces the next partials and holds back early final decodes
            self._last_partial_s = max(self._last_partial_s, time.monotonic() - started)
            raise
        except Exception:  # a partial is best effort; the final reports failures
            logger.warning("partial decode failed", exc_info=True)
            return
        if turn is not self._turn:
            return  # committed or cleared meanwhile: the final decode speaks for it
        delta = turn.agreement.update("".join(s.text for s in segments))
        if delta:
            await self._send(
                "conversation.item.input_audio_transcription.delta",
                item_id=turn.item_id,
                content_index=0,
                delta=delta,
            )

    async def _decode_final(self, audio: np.ndarray, diarize: bool) -> _Decoded:
        """Transcribe ``audio`` for good (and embed its sentences when diarizing)."""
        options = await self._options(audio, partial=False, words=diarize)
        segments = await self._transcribe(audio, options)
        pieces = sentence_segments(segments, self.turn_pause_s) if diarize else segments
        embeddings = await self._embed_segments(audio, pieces) if diarize else None
        return _Decoded(segments, pieces, embeddings)

    async def _finalize(
        self,
        utterance: _Utterance,
        previous: asyncio.Task | None,
        speculation: asyncio.Task | None = None,
    ) -> None:
        """Decode (and embed) now, or take the speculated decode; emit in commit order once
        the previous item is out."""
        try:
            failure: Exception | None = None
            decoded: _Decoded | None = None
            try:
                if speculation is not None:
                    await asyncio.wait([speculation])
                    if not speculation.cancelled():
                        decoded = speculation.result()  # its failure is the final's
                if decoded is None:
                    decoded = await self._decode_final(utterance.audio, utterance.diarize)
            except Exception as error:  # reported to the client as .failed
                logger.warning("final transcription failed", exc_info=True)
                failure = error
            if previous is not None:
                await asyncio.wait([previous])
            if failure is not None:
                await self._send_failed(utterance, failure)
            else:
                assert decoded is not None  # no failure: one of the decodes gave it
                await self._send_final(utterance, decoded)
        except Exception:  # e.g. the client went away while we sent
            logger.warning("could not send the final transcript", exc_info=True)
        finally:
            self._final_slots.release()

    async def _options(
        self, audio: np.ndarray, partial: bool, words: bool = False
    ) -> DecodeOptions:
        model = self._model_id(self.config.model) or ""
        language = self.config.language or self._language
        if language is None and self._detect_language is not None:
            language = self._language = await self._detect_language(audio, model)
        return DecodeOptions(
            model=model,
            language=language,
            prompt=self.config.prompt,
            word_timestamps=words,
            beam_size=self.partial_beam_size if partial else self.beam_size,
        )

    def _model_id(self, requested: str | None) -> str | None:
        if self._resolve_model is None:
            return requested
        try:
            return self._resolve_model(requested)
        except SpeechServerError as error:
            raise ClientEventError(
                error.message, code=error.code or "invalid_value", param=CONFIG_PARAMS["model"]
            ) from None

    async def _embed_segments(
        self, audio: np.ndarray, segments: list[Segment]
    ) -> list[np.ndarray | None] | None:
        """A voice vector per segment long enough to tell speakers apart (else None)."""
        embed_fn = self._embed
        if embed_fn is None:
            return None

        async def embed(segment: Segment) -> np.ndarray | None:
            if segment.end - segment.start < self.min_speaker_segment_s:
                return None
            start, end = int(segment.start * SAMPLE_RATE), int(segment.end * SAMPLE_RATE)
            return _unit_or_none(await embed_fn(audio[start:end]))

        return list(await asyncio.gather(*[embed(s) for s in segments]))

    def _speakers_of(
        self, segments: list[Segment], embeddings: list[np.ndarray | None]
    ) -> list[str]:
        """Long segments by voice. A short one is too short to embed reliably: it takes the
        speaker of the nearest voiced segment before it in the utterance (else after it),
        else the stream's previous speaker."""
        labels = [
            self.speakers.assign(e, s.end - s.start) if e is not None else None
            for s, e in zip(segments, embeddings, strict=True)
        ]
        voiced = [label for label in labels if label]
        fallback = voiced[0] if voiced else self.speakers.fallback()
        speakers, previous = [], None
        for label in labels:
            previous = label or previous
            speakers.append(previous or fallback)
        return speakers

    # --- server events --------------------------------------------------------------

    async def _send_final(self, utterance: _Utterance, decoded: _Decoded) -> None:
        """``segment`` events for the speaker-homogeneous pieces, then ``completed``."""
        segments = decoded.segments
        if decoded.embeddings is not None:
            pieces = decoded.pieces
            for segment, speaker in zip(
                pieces, self._speakers_of(pieces, decoded.embeddings), strict=True
            ):
                self._segment_count += 1
                await self._send(
                    "conversation.item.input_audio_transcription.segment",
                    item_id=utterance.item_id,
                    content_index=0,
                    id=f"seg_{self._segment_count:04d}",
                    start=round(utterance.start_s + segment.start, 3),
                    end=round(utterance.start_s + segment.end, 3),
                    text=segment.text.strip(),
                    speaker=speaker,
                )
        await self._send(
            "conversation.item.input_audio_transcription.completed",
            item_id=utterance.item_id,
            content_index=0,
            transcript="".join(s.text for s in segments).strip(),
            usage={"type": "duration", "seconds": round(utterance.duration_s, 3)},
        )

    async def _send_failed(self, utterance: _Utterance, error: Exception) -> None:
        if isinstance(error, SpeechServerError):
            details = error.to_openai()["error"]
        else:
            details = {
                "type": "server_error",
                "code": "transcription_failed",
                "message": "transcription failed for this audio",
                "param": None,
            }
        await self._send(
            "conversation.item.input_audio_transcription.failed",
            item_id=utterance.item_id,
            content_index=0,
            error=details,
        )

    async def _send_error(self, error: ClientEventError, client_event_id: Any) -> None:
        await self._send(
            "error",
            error={
                "type": "invalid_request_error",
                "code": error.code,
                "message": error.message,
                "param": error.param,
                "event_id": client_event_id if isinstance(client_event_id, str) else None,
            },
        )

    def _session_object(self) -> dict[str, Any]:
        return self.config.to_openai(self.session_id, self._model_id(self.config.model))

    async def _send(self, kind: str, **fields: Any) -> None:
        event = {"type": kind, "event_id": new_id("event"), **fields}
        async with self._emit_lock:  # one event at a time on the socket
            await self._emit_callable(event)


def _neg_threshold(threshold: float) -> float:
    """Silero's hysteresis: speech ends only once the probability falls this low."""
    return max(threshold - 0.15, 0.01)


def _decode_audio_field(event: dict) -> bytes:
    audio = event.get("audio")
    if not isinstance(audio, str):
        raise ClientEventError(
            "input_audio_buffer.append needs 'audio': base64-encoded PCM16",
            code="missing_required_parameter" if audio is None else "invalid_value",
            param="audio",
        )
    try:
        return base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise ClientEventError("audio is not valid base64", param="audio") from None


def _unit_or_none(embedding: Any) -> np.ndarray | None:
    if embedding is None:
        return None
    vector = np.asarray(embedding, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(vector))
    return vector / norm if np.isfinite(norm) and norm > 0 else None
