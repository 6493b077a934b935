"""One live transcription stream over OpenAI's Realtime protocol, free of Ray.

One ``RealtimeTranscriptionSession`` per WebSocket. The endpoint hands it client events
(parsed JSON) and raw PCM16 frames; it answers through the injected ``emit`` with server
events shaped like ``openai.types.realtime``. Model work goes through injected async
callables (``transcribe``, ``embed``), so the same core runs against Ray deployments in
the server and against in-process models or fakes in tests.

Flow: PCM16 at the session rate → soxr stream resampler → 16 kHz → streaming Silero VAD
in 32 ms windows → a fixed-size buffer holding only the open utterance plus a short
pre-roll. Speech start and stop come from the VAD (``server_vad``) or only from client
commits (``turn_detection: null``). Every ~1 s of new speech a partial decode runs (at
most one at a time); words that two successive partials agree on go out as ``delta``
events. A committed utterance is decoded once more in full for the final ``completed``
event; with diarization on each sentence is embedded and clustered online with the
speakers seen so far in this stream (``SpeakerTracker``). Utterances are capped below
Whisper's 30 s window by cutting at the longest recent pause. This module holds the
client events and the turn-taking; ``decoding.py`` the decodes and server events.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import ValidationError

from speakerscribe.realtime.decoding import (
    DecodingSession,
    DetectLanguageFn,
    EmbedFn,
    EmitFn,
    TranscribeFn,
)
from speakerscribe.realtime.protocol import (
    CONFIG_PARAMS,
    MAX_PREFIX_PADDING_MS,
    MIN_COMMIT_MS,
    ClientEventError,
    RealtimeSessionConfig,
    ServerVad,
    _decode_audio_field,
    new_id,
    session_changes,
)
from speakerscribe.realtime.stream import (
    MANUAL_SPEECH_THRESHOLD,
    VAD_WINDOW,
    WINDOW_MS,
    StreamingResampler,
    StreamingVad,
    WindowBuffer,
    _neg_threshold,
    longest_pause_middle,
)
from speakerscribe.realtime.turns import SessionTuning, _Turn
from speakerscribe.types import SAMPLE_RATE


class RealtimeTranscriptionSession(DecodingSession):
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
        tuning: SessionTuning | None = None,
        config: RealtimeSessionConfig | None = None,
        detect_language: DetectLanguageFn | None = None,
        resolve_model: Callable[[str | None], str] | None = None,
    ):
        tuning = tuning or SessionTuning()
        if tuning.max_utterance_s > 29.0:
            raise ValueError("max_utterance_s must leave room inside Whisper's 30 s window")
        config = config or RealtimeSessionConfig()
        if config.enable_speaker_diarization and embed is None:
            raise ValueError("speaker diarization needs an embed callable")
        super().__init__(
            transcribe,
            emit,
            embed,
            config=config,
            tuning=tuning,
            detect_language=detect_language,
            resolve_model=resolve_model,
        )
        self._max_utterance = int(tuning.max_utterance_s * SAMPLE_RATE) // VAD_WINDOW
        self._cut_search = int(tuning.cut_search_s * SAMPLE_RATE) // VAD_WINDOW
        self._long_turn = int(tuning.long_turn_s * SAMPLE_RATE) // VAD_WINDOW
        self._long_turn_silence = max(1, -(-tuning.long_turn_silence_ms // WINDOW_MS))
        self._min_speech = max(1, -(-tuning.min_speech_ms // WINDOW_MS))
        self._speculate_after = max(1, -(-tuning.speculate_after_ms // WINDOW_MS))
        self._speculate_lead = tuning.speculate_lead_ms // WINDOW_MS
        # the open utterance, or idle pre-roll plus a not-yet-confirmed speech start
        self._buffer = WindowBuffer(
            self._max_utterance + -(-MAX_PREFIX_PADDING_MS // WINDOW_MS) + self._min_speech + 2
        )
        self._resampler = StreamingResampler(self.config.input_rate)
        self._vad = StreamingVad()
        self._turn = _Turn(item_id=new_id("item"))
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
        config = self._updated_config(session_changes(session))
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

    def _updated_config(self, changes: dict[str, Any]) -> RealtimeSessionConfig:
        """The config with ``changes`` applied, or the error naming the field at fault."""
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
        return config

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
        if self._turn.start is None:
            await self._idle_window(probability, vad)
        else:
            await self._speech_window(probability, vad)

    async def _idle_window(self, probability: float, vad: ServerVad) -> None:
        """Wait for enough speech to call it a start; till then keep only the pre-roll."""
        turn, position = self._turn, self._buffer.end - 1  # the window just pushed
        neg_threshold = _neg_threshold(vad.threshold)
        prefix = -(-vad.prefix_padding_ms // WINDOW_MS)
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

    async def _speech_window(self, probability: float, vad: ServerVad) -> None:
        """Commit after the pause, cut an utterance grown too long, or speculate in a pause."""
        turn, position = self._turn, self._buffer.end - 1  # the window just pushed
        assert turn.start is not None  # an open utterance
        neg_threshold = _neg_threshold(vad.threshold)
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
            and self._last_partial_s <= self.tuning.speculate_below_partial_s
        ):
            self._speculate(turn)

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
