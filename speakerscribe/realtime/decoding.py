"""The model half of a live session: commits, enrolled voices, decodes, server events.

``RealtimeTranscriptionSession`` (``session.py``) decides from the client's events and
the VAD when an utterance starts, pauses and ends; this base class turns those moments
into model calls and OpenAI server events, in commit order. Split so each half reads on
its own; they share one object's state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from speakerscribe.diarization.known_speakers import decode_reference
from speakerscribe.errors import SpeechServerError
from speakerscribe.protocol import clean_speaker_names, speaker_pairs_mismatch
from speakerscribe.realtime.protocol import (
    CONFIG_PARAMS,
    ClientEventError,
    RealtimeSessionConfig,
    new_id,
)
from speakerscribe.realtime.speakers import SpeakerTracker, _unit_or_none
from speakerscribe.realtime.stream import VAD_WINDOW, WindowBuffer
from speakerscribe.realtime.turns import (
    SessionTuning,
    _Decoded,
    _Speculation,
    _Turn,
    _Utterance,
    sentence_segments,
)
from speakerscribe.types import SAMPLE_RATE, Segment
from speakerscribe.whisper.options import DecodeOptions

logger = logging.getLogger(__name__)

TranscribeFn = Callable[[np.ndarray, DecodeOptions], Awaitable[list[Segment]]]
EmbedFn = Callable[[np.ndarray], Awaitable["np.ndarray | None"]]
EmitFn = Callable[[dict], Awaitable[None]]
DetectLanguageFn = Callable[[np.ndarray, str], Awaitable[str]]


class DecodingSession:
    """Model work and server events of one live stream (see the module docstring)."""

    # the turn-taking state, kept by RealtimeTranscriptionSession
    _turn: _Turn
    _buffer: WindowBuffer

    def __init__(
        self,
        transcribe: TranscribeFn,
        emit: EmitFn,
        embed: EmbedFn | None,
        *,
        config: RealtimeSessionConfig,
        tuning: SessionTuning,
        detect_language: DetectLanguageFn | None,
        resolve_model: Callable[[str | None], str] | None,
    ):
        self._transcribe = transcribe
        self._emit_callable = emit
        self._embed = embed
        self._detect_language = detect_language
        self._resolve_model = resolve_model
        self.config = config
        self.tuning = tuning
        self.session_id = new_id("sess")
        self.speakers = SpeakerTracker(
            tuning.speaker_threshold, tuning.max_speakers, tuning.known_speaker_threshold
        )
        self._partial_interval = max(1, int(tuning.partial_interval_s * SAMPLE_RATE) // VAD_WINDOW)
        self._last_partial_s = 0.0
        self._previous_item_id: str | None = None
        self._language: str | None = None
        self._segment_count = 0
        self._emit_lock = asyncio.Lock()
        self._final_slots = asyncio.Semaphore(tuning.max_pending_finals)
        self._finals: set[asyncio.Task] = set()
        self._last_final: asyncio.Task | None = None
        self._partial: asyncio.Task | None = None
        self._closed = False

    # --- commits --------------------------------------------------------------------

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

    # --- enrolled voices ------------------------------------------------------------

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
        if len(names) > self.tuning.max_known_speakers:
            raise ClientEventError(
                f"at most {self.tuning.max_known_speakers} known speakers per session",
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
        pieces = sentence_segments(segments, self.tuning.turn_pause_s) if diarize else segments
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
            beam_size=self.tuning.partial_beam_size if partial else self.tuning.beam_size,
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
            if segment.end - segment.start < self.tuning.min_speaker_segment_s:
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
