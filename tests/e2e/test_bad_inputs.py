"""A corpus of bad (and odd) inputs, each with the status a user should get; the server survives."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest
import requests
import soundfile

pytestmark = pytest.mark.e2e


def wav(audio: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def video_without_audio() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as output:
        stream = output.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for _ in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def limited(server) -> str:
    """The application again with small limits, so over-limit cases stay cheap."""
    from ray import serve

    from pipeline_graph import build
    from speakerscribe.settings import load_settings

    settings = load_settings(
        max_upload_mb=1.0, max_audio_duration_s=700.0, enable_speaker_diarization=False
    )
    serve.run(build(settings), name="limited", route_prefix="/limited")
    yield f"{server}/limited"
    serve.delete("limited")


def cases(testdata):
    jfk = (testdata / "faster-whisper/jfk.flac").read_bytes()
    mp3 = (testdata / "faster-whisper/hotwords.mp3").read_bytes()
    sample = (testdata / "pyannote/sample.wav").read_bytes()
    rng = np.random.default_rng(0)
    speech = soundfile.read(io.BytesIO(sample), dtype="float32")[0]
    nan_wav = speech.copy()
    nan_wav[::97] = np.nan
    corrupted_header = bytearray(sample)
    corrupted_header[8:36] = b"\xff" * 28
    eight_channels = np.tile(speech[:160000, None], (1, 8)) * rng.uniform(0.5, 1, 8)
    tone_8k = np.sin(np.arange(8000 * 3) / 8000 * 2 * np.pi * 300).astype(np.float32) * 0.3
    ok = {"file": ("jfk.flac", jfk)}
    # (name, files, form, expected status, expected text check or error param)
    return [
        ("0 bytes", {"file": ("empty.wav", b"")}, {}, 400, "file"),
        ("missing file field", None, {"response_format": "json"}, 400, "file"),
        (
            "text file named .wav",
            {"file": ("notes.wav", b"meeting notes: buy milk\n" * 20)},
            {},
            400,
            "file",
        ),
        ("just a RIFF header", {"file": ("head.wav", sample[:44])}, {}, 400, "file"),
        ("corrupted WAV header", {"file": ("bad.wav", bytes(corrupted_header))}, {}, 400, "file"),
        ("video without audio", {"file": ("silent.mp4", video_without_audio())}, {}, 400, "file"),
        ("truncated mp3 (first half)", {"file": ("cut.mp3", mp3[: len(mp3) // 2])}, {}, 200, None),
        (
            "1 ms of audio",
            {"file": ("tick.wav", wav(np.zeros(16, np.float32), 16000))},
            {},
            200,
            "",
        ),
        (
            "10 minutes of silence",
            {"file": ("quiet.wav", wav(np.zeros(16000 * 600, np.float32), 16000))},
            {},
            200,
            "",
        ),
        (
            "float WAV with NaNs",
            {"file": ("nan.wav", wav(nan_wav, 16000, "FLOAT"))},
            {},
            200,
            "chicago",
        ),
        (
            "8 channels",
            {"file": ("8ch.wav", wav(eight_channels.astype(np.float32), 16000))},
            {},
            200,
            "hello",
        ),
        ("8 kHz", {"file": ("8k.wav", wav(speech[::2], 8000))}, {}, 200, "chicago"),
        (
            "192 kHz",
            {"file": ("192k.wav", wav(np.repeat(speech[:160000], 12), 192000))},
            {},
            200,
            "hello",
        ),
        ("pure tone", {"file": ("tone.wav", wav(tone_8k, 8000))}, {}, 200, None),
        ("temperature not a number", ok, {"temperature": "warm"}, 400, "temperature"),
        ("temperature out of range", ok, {"temperature": "1.5"}, 400, "temperature"),
        ("unknown response_format", ok, {"response_format": "docx"}, 400, "response_format"),
        ("unknown language", ok, {"language": "xx-klingon"}, 400, "language"),
        ("num_speakers 0", ok, {"num_speakers": "0"}, 400, "num_speakers"),
        ("num_speakers 1000", ok, {"num_speakers": "1000"}, 400, "num_speakers"),
        ("num_speakers not a number", ok, {"num_speakers": "two"}, 400, "num_speakers"),
        ("min_speakers > max_speakers", ok, {"min_speakers": "4", "max_speakers": "2"}, 400, None),
        ("unknown model", ok, {"model": "whisper-9000"}, 404, "model"),
        (
            "unknown granularity",
            ok,
            {"timestamp_granularities[]": "sentence"},
            400,
            "timestamp_granularities",
        ),
        ("unknown field", ok, {"frobnicate": "yes"}, 400, "frobnicate"),
        (
            "boolean that is not",
            ok,
            {"enable_vocal_separation": "perhaps"},
            400,
            "enable_vocal_separation",
        ),
        ("multichannel on a mono file", ok, {"multichannel": "true"}, 200, "country"),
    ]


def temp_files() -> set[str]:
    """What Python's tempfile (Starlette's upload spooling included) leaves in the temp dir."""
    import tempfile

    return {p.name for p in Path(tempfile.gettempdir()).glob("tmp*")}


def test_bad_input_corpus(server, testdata):
    temp_before = temp_files()
    outcomes = []
    for name, files, form, status, check in cases(testdata):
        response = requests.post(
            f"{server}/v1/audio/transcriptions", files=files, data=form, timeout=600
        )
        outcomes.append((name, response.status_code))
        assert response.status_code == status, (name, response.text[:300])
        body = response.json()
        if status >= 400:
            error = body["error"]
            assert error["message"] and error["type"] == "invalid_request_error", name
            if check is not None:
                assert error["param"] == check, (name, error)
        elif check is not None:
            assert check in body["text"].lower(), (name, body["text"])
    assert len(outcomes) >= 25
    # After all of it: still healthy, still right.
    assert requests.get(f"{server}/health", timeout=30).status_code == 200
    with open(testdata / "faster-whisper/jfk.flac", "rb") as audio:
        good = requests.post(
            f"{server}/v1/audio/transcriptions", files={"file": audio}, timeout=600
        )
    assert good.status_code == 200 and "ask not what your country" in good.json()[
        "text"
    ].lower().replace(",", "")
    assert temp_files() <= temp_before  # no request, good or bad, left a temporary file


def test_non_multipart_json_body(server):
    response = requests.post(f"{server}/v1/audio/transcriptions", json={"file": "x"}, timeout=30)
    assert response.status_code == 415 and response.json()["error"]["param"] == "file"


def test_upload_and_duration_limits(limited, testdata):
    big = (testdata / "pyannote/sample.wav").read_bytes() * 2  # ~1.8 MB > 1 MB
    response = requests.post(
        f"{limited}/v1/audio/transcriptions", files={"file": ("big.wav", big)}, timeout=120
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
    small_but_long = wav(
        np.zeros(1000 * 720, np.float32), 1000, "PCM_U8"
    )  # 12 min at 1 kHz, 0.7 MB
    response = requests.post(
        f"{limited}/v1/audio/transcriptions",
        files={"file": ("long.wav", small_but_long)},
        timeout=300,
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "audio_too_long"
    assert requests.get(f"{limited}/health", timeout=30).status_code == 200


def multipart(name: str, payload: bytes, **fields: str) -> tuple[bytes, str]:
    from urllib3 import encode_multipart_formdata

    return encode_multipart_formdata({**fields, "file": (name, payload)})


def trickle(body: bytes, chunk: int, pause_s: float):
    """A chunked upload (no Content-Length) that arrives slowly."""
    import time

    for start in range(0, len(body), chunk):
        yield body[start : start + chunk]
        time.sleep(pause_s)


def test_chunked_upload_over_the_limit_stops_at_the_limit(limited, testdata):
    body, content_type = multipart("big.wav", (testdata / "pyannote/sample.wav").read_bytes() * 2)
    response = requests.post(
        f"{limited}/v1/audio/transcriptions",
        data=trickle(body, 256 * 1024, 0.0),
        headers={"Content-Type": content_type},
        timeout=120,
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
    assert requests.get(f"{limited}/health", timeout=30).status_code == 200


def test_slow_chunked_upload_is_received_whole(server, testdata):
    """An upload that trickles in over seconds is neither cut nor refused."""
    body, content_type = multipart(
        "jfk.flac",
        (testdata / "faster-whisper/jfk.flac").read_bytes(),
        enable_speaker_diarization="false",
    )
    response = requests.post(
        f"{server}/v1/audio/transcriptions",
        data=trickle(body, 64 * 1024, 0.3),  # 1.1 MB over ~5 s
        headers={"Content-Type": content_type},
        timeout=600,
    )
    assert response.status_code == 200, response.text[:300]
    assert "ask not what your country" in response.json()["text"].lower().replace(",", "")
