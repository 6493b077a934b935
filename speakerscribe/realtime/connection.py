"""One WebSocket connection of a live session: client messages in (within the size and
pace limits), server events out, model work through the stages. Ray-free: the ingress
hands it its stage handles; tests can hand it fakes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from speakerscribe.live_limits import LiveLimitError, RealTimePace, check_message_size
from speakerscribe.realtime.protocol import RealtimeSessionConfig
from speakerscribe.realtime.session import RealtimeTranscriptionSession
from speakerscribe.realtime.turns import SessionTuning
from speakerscribe.settings import Settings
from speakerscribe.types import Segment
from speakerscribe.whisper.options import DecodeOptions


class LiveStages(Protocol):
    """The model stages a live session calls."""

    async def transcribe(self, piece: np.ndarray, options: DecodeOptions) -> list[Segment]: ...

    async def embed(self, audio: np.ndarray) -> np.ndarray: ...

    async def detect_language(self, audio: np.ndarray, model: str) -> str: ...


async def serve_live_session(
    websocket: WebSocket,
    stages: LiveStages,
    settings: Settings,
    resolve_model: Callable[[str | None], str],
) -> None:
    """Run one accepted connection until the client leaves or breaks a limit."""
    client_listening = True

    async def emit(event: dict) -> None:
        nonlocal client_listening
        if not client_listening:
            return
        try:
            await websocket.send_json(event)
        except (WebSocketDisconnect, RuntimeError):  # the client left mid-send
            client_listening = False

    budget = settings.stage_timeout_s

    async def transcribe(audio: np.ndarray, options: DecodeOptions) -> list[Segment]:
        return await asyncio.wait_for(stages.transcribe(audio, options), budget)

    async def embed(audio: np.ndarray) -> np.ndarray:
        return await asyncio.wait_for(stages.embed(audio), budget)

    async def detect_language(audio: np.ndarray, model: str) -> str:
        return await asyncio.wait_for(stages.detect_language(audio, model), budget)

    session = RealtimeTranscriptionSession(
        transcribe,
        emit,
        embed,
        config=RealtimeSessionConfig(
            model=settings.model_id,
            enable_speaker_diarization=settings.enable_speaker_diarization,
        ),
        detect_language=detect_language,
        resolve_model=resolve_model,
        tuning=SessionTuning(
            beam_size=settings.beam_size,
            max_speakers=settings.max_speakers_limit,
            known_speaker_threshold=settings.known_speaker_threshold,
            max_known_speakers=settings.max_known_speakers,
        ),
    )
    pace = RealTimePace(settings.live_max_ahead_s)
    try:
        await session.start()
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                client_listening = False
                break
            data, text = message.get("bytes"), message.get("text")
            received = session.received_s
            try:
                check_message_size(
                    len(data if data is not None else (text or "")),
                    settings.live_max_message_bytes,
                )
                if data is not None:
                    await session.append_pcm16(data)
                elif text is not None:
                    await session.handle_event(text)
                pace.spend(session.received_s - received)
            except LiveLimitError as limit:
                await emit({"type": "error", **limit.to_openai()})
                await websocket.close(code=limit.close_code)
                client_listening = False
                break
    except WebSocketDisconnect:
        client_listening = False
    finally:
        await session.close()  # the last utterance, for a client still listening
