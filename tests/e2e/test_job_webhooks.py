"""Job webhooks over HTTP: loopback spellings refused at submission with nothing sent, and a
signed delivery retried after two 500s. Every listener is on 127.0.0.1; the test server
allows only the name "localhost" (tests/e2e/conftest.py)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from standardwebhooks import Webhook

pytestmark = pytest.mark.e2e


class Receiver:
    """A webhook receiver on 127.0.0.1; answers each POST with the next status (then 200)."""

    def __init__(self, statuses: list[int] | None = None):
        self.statuses, self.received = list(statuses or []), []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver():
    listening = Receiver()
    yield listening
    listening.close()


def submit(server: str, testdata, webhook_url: str) -> requests.Response:
    return requests.post(
        f"{server}/v1/audio/transcriptions/jobs",
        files={"file": ("jfk.flac", (testdata / "faster-whisper/jfk.flac").read_bytes())},
        data={"webhook_url": webhook_url, "enable_speaker_diarization": "false"},
        timeout=120,
    )


SPELLINGS = [
    "127.0.0.1",
    "127.1",
    "2130706433",
    "0x7f000001",
    "0177.0.0.1",
    "127.0.0.2",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "0.0.0.0",
]


def test_every_loopback_spelling_is_refused_and_nothing_is_sent(server, testdata, receiver):
    for host in SPELLINGS:
        response = submit(server, testdata, f"http://{host}:{receiver.port}/internal-admin")
        assert response.status_code == 400, (host, response.text)
        error = response.json()["error"]
        assert error["param"] == "webhook_url" and error["code"] == "webhook_url_refused", host
    listed = requests.get(f"{server}/v1/audio/jobs", timeout=30).json()["data"]
    assert not [j for j in listed if str(receiver.port) in (j["webhook_url"] or "")]
    time.sleep(2.0)
    assert receiver.received == []


def test_signed_delivery_is_retried_after_two_500s(server, testdata, webhook_secret):
    receiver = Receiver([500, 500])
    try:
        response = submit(server, testdata, f"http://localhost:{receiver.port}/done")
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        deadline = time.time() + 300
        while True:
            job = requests.get(f"{server}/v1/audio/jobs/{job_id}", timeout=30).json()
            if job["webhook"] and job["webhook"]["delivered_at"]:
                break
            assert time.time() < deadline, job
            time.sleep(0.5)
    finally:
        receiver.close()
    assert job["status"] == "succeeded"
    assert job["webhook"]["attempts"] == 3 and job["webhook"]["last_status"] == 200
    assert len(receiver.received) == 3
    for headers, body in receiver.received:
        event = Webhook(webhook_secret).verify(body, headers)  # raises unless signed right
        assert event["type"] == "job.succeeded" and event["job"]["id"] == job_id
        assert headers["webhook-id"] == f"{job_id}.succeeded"
    forged = dict(receiver.received[0][0], **{"webhook-signature": "v1,AAAA"})
    with pytest.raises(Exception, match="signature"):
        Webhook(webhook_secret).verify(receiver.received[0][1], forged)
    assert json.loads(receiver.received[-1][1])["job"]["status"] == "succeeded"
