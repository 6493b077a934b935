"""Cross-request batching: pieces of concurrent requests share one Whisper model call."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from ray import serve

from tools.scoring import word_error_rate

pytestmark = pytest.mark.e2e


def transcriber_stats() -> dict:
    handle = serve.get_deployment_handle("Transcriber", app_name="speakerscribe")
    return handle.stats.remote().result()


def test_concurrent_requests_share_model_calls(server, testdata):
    jfk = (testdata / "faster-whisper/jfk.flac").read_bytes()
    reference = (testdata / "faster-whisper/jfk.txt").read_text()
    before = transcriber_stats()

    def post(_):
        response = requests.post(
            f"{server}/v1/audio/transcriptions",
            files={"file": ("jfk.flac", jfk)},
            data={"enable_speaker_diarization": "false"},
            timeout=600,
        )
        response.raise_for_status()
        return response.json()["text"]

    with ThreadPoolExecutor(8) as pool:
        texts = list(pool.map(post, range(8)))
    after = transcriber_stats()
    calls = after["model_calls"] - before["model_calls"]
    pieces = after["pieces_served"] - before["pieces_served"]
    assert pieces == 8
    assert calls < pieces, (calls, pieces)  # at least one call served pieces of two requests
    assert after["largest_batch"] >= 2
    assert all(word_error_rate(reference, text) <= 0.05 for text in texts)


def test_prometheus_metrics_are_exported(server, metrics_url, testdata):
    import time

    jfk = (testdata / "faster-whisper/jfk.flac").read_bytes()
    response = requests.post(
        f"{server}/v1/audio/transcriptions",
        files={"file": ("jfk.flac", jfk)},
        data={"response_format": "diarized_json"},
        timeout=600,
    )
    assert response.status_code == 200
    wanted = {
        "ray_speakerscribe_transcriber_batch_size_bucket",
        "ray_speakerscribe_transcriber_piece_wait_seconds_bucket",
        "ray_speakerscribe_transcriber_audio_seconds_total",
        "ray_speakerscribe_audio_seconds_total",
        'stage="transcription"',
        'stage="diarization"',
        'stage="decode"',
        'stage="merge"',
    }
    text = ""
    deadline = time.time() + 90
    while time.time() < deadline:
        text = requests.get(metrics_url, timeout=10).text
        if all(name in text for name in wanted):
            break
        time.sleep(3)
    missing = {name for name in wanted if name not in text}
    assert not missing, missing
