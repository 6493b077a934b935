"""Jobs for long files: submit, poll progress, fetch in any format, survive the ingress, cancel,
webhook."""

from __future__ import annotations

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest
import requests
import soundfile
import srt
from ray import serve

pytestmark = pytest.mark.e2e

FORM = {"response_format": "verbose_json", "enable_speaker_diarization": "false"}


@pytest.fixture(scope="module")
def twenty_minutes(testdata) -> bytes:
    """The shared conversations and speeches, repeated to 20 minutes, as FLAC."""
    from speakerscribe.audio import decode_audio_bytes

    names = [
        "pyannote/sample.wav",
        "pyannote/dev00.wav",
        "pyannote/dev01.wav",
        "faster-whisper/jfk.flac",
    ]
    gap = np.zeros(8000, np.float32)
    block = np.concatenate(
        [x for n in names for x in (decode_audio_bytes((testdata / n).read_bytes()), gap)]
    )
    audio = np.tile(block, int(np.ceil(20 * 60 * 16000 / block.size)))[: 20 * 60 * 16000]
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, 16000, format="FLAC")
    return buffer.getvalue()


def submit(server: str, data: bytes, **form) -> dict:
    response = requests.post(
        f"{server}/v1/audio/transcriptions/jobs",
        files={"file": ("long.flac", data)},
        data=form,
        timeout=120,
    )
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/v1/audio/jobs/{response.json()['id']}"
    return response.json()


def poll(server: str, job_id: str) -> dict | None:
    """The job, or None while the ingress is away (restarting)."""
    try:
        response = requests.get(f"{server}/v1/audio/jobs/{job_id}", timeout=10)
    except requests.RequestException:
        return None
    if response.status_code != 200:
        assert response.status_code >= 500, response.text  # only an unavailable ingress
        return None
    return response.json()


def transcriber_stats() -> dict:
    return (
        serve.get_deployment_handle("Transcriber", app_name="speakerscribe").stats.remote().result()
    )


def test_a_long_job_survives_its_ingress_and_equals_the_synchronous_answer(server, twenty_minutes):
    import ray

    from deployments.introspection import replica_actors

    job = submit(server, twenty_minutes, **FORM)
    assert job["status"] == "queued" and job["object"] == "audio.transcription.job"
    seen, killed_at, deadline = [], None, time.time() + 900
    while time.time() < deadline:
        state = poll(server, job["id"])
        if state is not None:
            seen.append((state["stage"], state["progress"]))
            if killed_at is None and state["progress"] >= 0.15:
                (ingress,) = [
                    h for _, name, h in replica_actors("speakerscribe") if name == "SpeechIngress"
                ]
                ray.kill(ingress, no_restart=False)
                killed_at = state["progress"]
            if state["status"] in ("succeeded", "failed", "cancelled"):
                break
        time.sleep(1)
    assert state["status"] == "succeeded", state
    assert killed_at is not None and killed_at < 1.0, "the ingress was not killed mid-job"
    fractions = [p for stage, p in seen if stage == "transcription"]
    assert fractions == sorted(fractions) and len(set(fractions)) >= 4, seen
    print(
        f"job progress seen: {sorted(set(round(f, 2) for f in fractions))}; ingress killed "
        f"at {killed_at:.2f}"
    )

    from_job = requests.get(f"{server}/v1/audio/jobs/{job['id']}/result", timeout=60)
    assert from_job.status_code == 200
    synchronous = requests.post(
        f"{server}/v1/audio/transcriptions",
        files={"file": ("long.flac", twenty_minutes)},
        data=FORM,
        timeout=900,
    )
    assert synchronous.status_code == 200
    job_body, sync_body = from_job.json(), synchronous.json()
    assert job_body["text"] == sync_body["text"] and len(job_body["text"]) > 5000
    assert job_body["duration"] == sync_body["duration"] == 1200.0
    assert len(job_body["segments"]) == len(sync_body["segments"])
    for a, b in zip(job_body["segments"], sync_body["segments"], strict=True):
        assert abs(a["start"] - b["start"]) <= 0.02 and abs(a["end"] - b["end"]) <= 0.02

    as_srt = requests.get(
        f"{server}/v1/audio/jobs/{job['id']}/result", params={"response_format": "srt"}, timeout=60
    )
    assert len(list(srt.parse(as_srt.text))) == len(job_body["segments"])


def test_a_cancelled_job_stops_using_the_transcriber(server, twenty_minutes):
    job = submit(server, twenty_minutes, **FORM)
    deadline = time.time() + 300
    while time.time() < deadline:
        state = poll(server, job["id"])
        if state and state["progress"] > 0.02:
            break
        time.sleep(0.5)
    at_cancel = transcriber_stats()["pieces_served"]
    cancelled = requests.post(f"{server}/v1/audio/jobs/{job['id']}/cancel", timeout=30).json()
    assert cancelled["status"] in ("cancelling", "cancelled")
    deadline = time.time() + 30
    while (state := poll(server, job["id"])) is None or state["status"] != "cancelled":
        assert time.time() < deadline, state
        time.sleep(0.5)
    # the pieces already at the Transcriber (at most job_pieces_in_flight = 8) finish; no more come
    time.sleep(30)
    settled = transcriber_stats()["pieces_served"]
    assert settled - at_cancel <= 8, (at_cancel, settled)
    time.sleep(5)
    assert transcriber_stats()["pieces_served"] == settled
    assert state["progress"] < 0.9
    missing = requests.get(f"{server}/v1/audio/jobs/{job['id']}/result", timeout=30)
    assert missing.status_code == 409 and missing.json()["error"]["code"] == "job_not_finished"


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # http.server's naming
        body = self.rfile.read(int(self.headers["content-length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhook_on_completion_and_results_in_any_format(server, testdata):
    hook = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        job = submit(
            server,
            (testdata / "faster-whisper/jfk.flac").read_bytes(),
            response_format="text",
            webhook_url=f"http://localhost:{hook.server_port}/done",
        )
        deadline = time.time() + 120
        while not _Hook.received:
            assert time.time() < deadline, poll(server, job["id"])
            time.sleep(0.5)
    finally:
        hook.shutdown()
    (event,) = _Hook.received
    assert event["type"] == "job.succeeded" and event["job"]["id"] == job["id"]
    text = requests.get(f"{server}/v1/audio/jobs/{job['id']}/result", timeout=30)
    assert text.headers["content-type"].startswith("text/plain") and "ask not" in text.text
    vtt = requests.get(
        f"{server}/v1/audio/jobs/{job['id']}/result", params={"response_format": "vtt"}, timeout=30
    )
    assert vtt.text.startswith("WEBVTT")
    listed = requests.get(f"{server}/v1/audio/jobs", timeout=30).json()
    assert job["id"] in [j["id"] for j in listed["data"]]
    deleted = requests.delete(f"{server}/v1/audio/jobs/{job['id']}", timeout=30).json()
    assert deleted["deleted"] is True
    assert requests.get(f"{server}/v1/audio/jobs/{job['id']}", timeout=30).status_code == 404


@pytest.mark.parametrize(
    ("form", "status", "param"),
    [
        ({"stream": "true"}, 400, "stream"),
        ({"webhook_url": "ftp://example.com/x"}, 400, "webhook_url"),
        ({"model": "gpt-9"}, 404, "model"),
        ({"response_format": "yaml"}, 400, "response_format"),
    ],
)
def test_bad_job_submissions_are_refused_up_front(server, testdata, form, status, param):
    response = requests.post(
        f"{server}/v1/audio/transcriptions/jobs",
        files={"file": ("jfk.flac", (testdata / "faster-whisper/jfk.flac").read_bytes())},
        data=form,
        timeout=60,
    )
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param


def test_unknown_job_is_a_404(server):
    response = requests.get(f"{server}/v1/audio/jobs/job_nope", timeout=30)
    assert response.status_code == 404 and response.json()["error"]["code"] == "job_not_found"


def test_a_job_on_bad_audio_fails_with_the_same_error_a_synchronous_request_gets(server):
    job = submit(server, b"this is not audio", response_format="json")
    deadline = time.time() + 60
    while (state := poll(server, job["id"])) is None or state["status"] not in (
        "failed",
        "succeeded",
    ):
        assert time.time() < deadline, state
        time.sleep(0.5)
    assert state["status"] == "failed" and state["error"]["code"] == "invalid_audio"
    result = requests.get(f"{server}/v1/audio/jobs/{job['id']}/result", timeout=30)
    synchronous = requests.post(
        f"{server}/v1/audio/transcriptions",
        files={"file": ("x.wav", b"this is not audio")},
        timeout=30,
    )
    assert result.status_code == synchronous.status_code == 400
    assert result.json()["error"]["code"] == synchronous.json()["error"]["code"] == "invalid_audio"
