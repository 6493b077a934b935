"""Live transcription over the WebSocket, as OpenAI's Realtime transcription clients speak it."""

from __future__ import annotations

import base64
import json
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import soxr
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from speakerscribe.audio import decode_audio_bytes
from speakerscribe.types import SAMPLE_RATE
from tools.scoring import read_stm_text, word_error_rate

pytestmark = pytest.mark.e2e

RATE = 24_000  # OpenAI's PCM16 rate
FRAME_S = 0.1


def pcm16_frames(path, rate: int = RATE) -> list[bytes]:
    audio = decode_audio_bytes(path.read_bytes())
    audio = soxr.resample(audio, SAMPLE_RATE, rate)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    step = int(rate * FRAME_S) * 2
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


def stream(
    url: str,
    frames: list[bytes],
    speed: float = 4.0,
    binary: bool = False,
    session: dict | None = None,
) -> list[dict]:
    """Send frames at ``speed`` × real time, commit, and collect events until the last final."""
    events: list[dict] = []
    with connect(url, open_timeout=60, max_size=None) as socket:
        events.append(json.loads(socket.recv(timeout=60)))
        update = {
            "type": "session.update",
            "session": {
                "type": "transcription",
                "enable_speaker_diarization": True,
                **(session or {}),
            },
        }
        socket.send(json.dumps(update))
        started = time.monotonic()
        for index, frame in enumerate(frames):
            if binary:
                socket.send(frame)
            else:
                socket.send(
                    json.dumps(
                        {
                            "type": "input_audio_buffer.append",
                            "audio": base64.b64encode(frame).decode(),
                        }
                    )
                )
            pause = started + (index + 1) * FRAME_S / speed - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            while True:  # drain what has arrived, without waiting
                try:
                    events.append(json.loads(socket.recv(timeout=0)))
                except TimeoutError:
                    break
        socket.send(json.dumps({"type": "input_audio_buffer.commit"}))
        commit_answered = False  # our commit gives `committed`, or an `error` if VAD took it all
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            event = json.loads(socket.recv(timeout=120))
            events.append(event)
            commit_answered |= event["type"] in ("input_audio_buffer.committed", "error")
            if commit_answered and not unfinished_items(events):
                break
    return events


def unfinished_items(events: list[dict]) -> set[str]:
    committed = {e["item_id"] for e in events if e["type"] == "input_audio_buffer.committed"}
    finished = {
        e["item_id"]
        for e in events
        if e["type"]
        in (
            "conversation.item.input_audio_transcription.completed",
            "conversation.item.input_audio_transcription.failed",
        )
    }
    return committed - finished


def reference_text(testdata) -> str:
    return read_stm_text(testdata / "pyannote/sample.stm")


@pytest.fixture(scope="module")
def ws_url(server) -> str:
    return server.replace("http://", "ws://") + "/v1/realtime?intent=transcription"


def test_sample_streamed_at_4x_matches_offline_and_finds_speakers(server, ws_url, testdata):
    path = testdata / "pyannote/sample.wav"
    offline = requests.post(
        f"{server}/v1/audio/transcriptions", files={"file": path.open("rb")}, timeout=600
    ).json()["text"]
    events = stream(ws_url, pcm16_frames(path))
    kinds = [e["type"] for e in events]
    assert kinds[0] == "session.created" and "session.updated" in kinds
    assert "input_audio_buffer.speech_started" in kinds and "input_audio_buffer.committed" in kinds
    assert "conversation.item.input_audio_transcription.failed" not in kinds
    live = " ".join(
        e["transcript"] for e in events if e["type"].endswith("transcription.completed")
    )
    reference = reference_text(testdata)
    live_wer, offline_wer = word_error_rate(reference, live), word_error_rate(reference, offline)
    print(f"WER live {live_wer:.3f} offline {offline_wer:.3f}")
    assert live_wer <= offline_wer + 0.05, (live, offline)
    segments = [e for e in events if e["type"].endswith("transcription.segment")]
    assert len({s["speaker"] for s in segments}) >= 2
    assert all(0 <= s["start"] <= s["end"] <= 30.5 for s in segments)


def test_enrolled_voices_are_named_in_segments(ws_url, testdata):
    """Enrol spk1_snt1 as alice and spk2_snt1 as bob; their other clips, streamed with pauses
    between them, come back as segments named alice and bob."""
    clips = testdata / "speechbrain"

    def data_url(name: str) -> str:
        return "data:audio/wav;base64," + base64.b64encode((clips / name).read_bytes()).decode()

    order = ["spk1_snt2.wav", "spk2_snt2.wav", "spk1_snt3.wav", "spk2_snt3.wav"]
    silence = [bytes(int(RATE * FRAME_S) * 2)] * 12  # 1.2 s: each clip is its own turn
    frames = [frame for name in order for frame in (*pcm16_frames(clips / name), *silence)]
    events = stream(
        ws_url,
        frames,
        session={
            "known_speaker_names": ["alice", "bob"],
            "known_speaker_references": [data_url("spk1_snt1.wav"), data_url("spk2_snt1.wav")],
        },
    )
    updated = next(e for e in events if e["type"] == "session.updated")
    assert updated["session"]["known_speaker_names"] == ["alice", "bob"]
    errors = [e["error"] for e in events if e["type"] == "error"]
    # the closing commit finds the buffer empty when VAD already committed the last turn
    assert all(e["message"].startswith("Error committing input audio buffer") for e in errors)
    segments = [e for e in events if e["type"].endswith("transcription.segment")]
    speakers = [s["speaker"] for s in segments]
    print("live known speakers:", [(round(s["start"], 1), s["speaker"]) for s in segments])
    assert segments and set(speakers) <= {"alice", "bob"}
    assert {"alice", "bob"} <= set(speakers)
    # each clip's segments carry its speaker's name
    position, bounds = 0.0, []
    for name in order:
        duration = len(pcm16_frames(clips / name)) * FRAME_S
        bounds.append((position, position + duration, "alice" if "spk1" in name else "bob"))
        position += duration + len(silence) * FRAME_S
    for segment in segments:
        middle = (segment["start"] + segment["end"]) / 2
        expected = min(bounds, key=lambda b: 0 if b[0] <= middle <= b[1] else abs(middle - b[0]))
        assert segment["speaker"] == expected[2], (segment, expected)


def test_official_openai_client_speaks_the_protocol(server, testdata):
    from openai import OpenAI

    client = OpenAI(
        base_url=f"{server}/v1",
        websocket_base_url=server.replace("http://", "ws://") + "/v1",
        api_key="unused",
    )
    frames = pcm16_frames(testdata / "faster-whisper/jfk.flac")
    with client.realtime.connect(extra_query={"intent": "transcription"}) as connection:
        assert connection.recv().type == "session.created"
        connection.session.update(
            session={"type": "transcription", "audio": {"input": {"turn_detection": None}}}
        )
        assert connection.recv().type == "session.updated"
        for frame in frames:
            connection.input_audio_buffer.append(audio=base64.b64encode(frame).decode())
        connection.input_audio_buffer.commit()
        completed = None
        for event in connection:
            if event.type == "conversation.item.input_audio_transcription.completed":
                completed = event
                break
    assert completed is not None
    assert "ask not what your country can do for you" in completed.transcript.lower().replace(
        ",", ""
    )


def test_eight_concurrent_streams_all_complete(ws_url, testdata):
    """Each of 8 streams at once gets the whole speech back. The bound leaves room for an
    utterance cut at a pause ("ask not" | "what your country …" read "Like your country"
    on one CI machine: 3 errors in 22 words); single-stream quality is held elsewhere."""
    frames = pcm16_frames(testdata / "faster-whisper/jfk.flac")

    def one(index: int) -> list[dict]:
        return stream(
            ws_url, frames, speed=4.0, binary=index % 2 == 1
        )  # JSON and raw PCM16 clients

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    reference = (testdata / "faster-whisper/jfk.txt").read_text()
    for events in results:
        finals = [e["transcript"] for e in events if e["type"].endswith("transcription.completed")]
        assert word_error_rate(reference, " ".join(finals)) <= 0.2, finals


def test_bad_client_events_get_error_events_and_the_stream_goes_on(ws_url):
    with connect(ws_url, open_timeout=60) as socket:
        assert json.loads(socket.recv(timeout=60))["type"] == "session.created"
        socket.send("not json")
        socket.send(
            json.dumps({"type": "input_audio_buffer.append", "audio": "%%%", "event_id": "evt_1"})
        )
        socket.send(json.dumps({"type": "response.create"}))
        errors = [json.loads(socket.recv(timeout=30)) for _ in range(3)]
        assert all(e["type"] == "error" and e["error"]["message"] for e in errors)
        assert errors[1]["error"]["event_id"] == "evt_1"
        socket.send(json.dumps({"type": "input_audio_buffer.clear"}))
        assert json.loads(socket.recv(timeout=30))["type"] == "input_audio_buffer.cleared"


def test_only_transcription_intent(server):
    url = server.replace("http://", "ws://") + "/v1/realtime?intent=conversation"
    with connect(url, open_timeout=60) as socket:
        event = json.loads(socket.recv(timeout=30))
    assert event["type"] == "error" and event["error"]["param"] == "intent"


def _close_code(socket) -> int | None:
    try:
        while True:
            socket.recv(timeout=30)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


def test_an_oversized_message_is_an_error_and_a_1009_close(server, ws_url):
    with connect(ws_url, open_timeout=60, max_size=None) as socket:
        socket.recv(timeout=60)  # session.created
        socket.send(bytes(2 * 1024 * 1024))  # 2 MiB of PCM in one frame
        error = json.loads(socket.recv(timeout=30))
        assert error["type"] == "error" and error["error"]["code"] == "message_too_large"
        assert _close_code(socket) == 1009
    assert requests.get(f"{server}/health", timeout=30).status_code == 200


def test_audio_far_faster_than_real_time_is_stopped(server, ws_url):
    second = bytes(2 * RATE)  # 1 s of silence at 24 kHz
    with connect(ws_url, open_timeout=60, max_size=None) as socket:
        socket.recv(timeout=60)
        codes = []
        try:
            for _ in range(120):  # 2 minutes of audio as fast as the socket takes it
                socket.send(second)
        except ConnectionClosed:
            pass
        try:
            while True:
                event = json.loads(socket.recv(timeout=30))
                if event["type"] == "error":
                    codes.append(event["error"]["code"])
        except ConnectionClosed as closed:
            close_code = closed.rcvd.code if closed.rcvd else None
    assert "audio_too_fast" in codes and close_code == 1008
    assert requests.get(f"{server}/health", timeout=30).status_code == 200


def test_sessions_per_key_are_limited(server, ws_url):
    from speakerscribe.settings import load_settings

    limit = load_settings().live_max_sessions_per_key
    sockets = [connect(ws_url, open_timeout=60) for _ in range(limit)]
    try:
        for socket in sockets:
            assert json.loads(socket.recv(timeout=60))["type"] == "session.created"
        with connect(ws_url, open_timeout=60) as extra:
            error = json.loads(extra.recv(timeout=60))
            assert error["type"] == "error" and error["error"]["code"] == "too_many_sessions"
            assert _close_code(extra) == 1013
    finally:
        for socket in sockets:
            socket.close()
    time.sleep(1.0)
    with connect(ws_url, open_timeout=60) as again:  # room again once they closed
        assert json.loads(again.recv(timeout=60))["type"] == "session.created"
