"""Jobs survive the whole application and Ray going away at once (`make serve` and every
Ray process killed, no graceful shutdown) and `make serve` starting again, on the default
SQLite store and on PostgreSQL:

- a finished job and its result, in every response format, are still there;
- a job still running at the stop finishes after the restart without being submitted
  again, reusing the pieces it had finished (its ``pieces.reused``).
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import requests
from restart_harness import BASE_URL, MakeServe, write_config

pytestmark = pytest.mark.restart

FORMATS = ("json", "text", "srt", "vtt", "verbose_json", "diarized_json")
LONG_FILES = (
    "diarization/libri_9spk.wav",
    "diarization/libri_6spk.wav",
    "diarization/EN2002a_30s.wav",
    "pyannote/sample.wav",
    "pyannote/dev00.wav",
)
PIECES_BEFORE_STOP = 3


def wav(audio: np.ndarray) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, audio, 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def long_conversation(testdata) -> bytes:
    """About 16 minutes: the shared recordings twice, then the first three again.

    The stop is a crash, not Serve's graceful shutdown: during that the job kept running
    and, as transcription got faster, finished before the replicas went (nothing left to
    resume). Killed, it stops where it is whatever the speed.
    """
    from speakerscribe.audio import decode_audio_bytes

    clips = [decode_audio_bytes((testdata / name).read_bytes()) for name in LONG_FILES]
    audio = np.concatenate(clips * 2 + clips[:3])
    return wav(audio)


def submit(data: bytes, **form) -> dict:
    response = requests.post(
        f"{BASE_URL}/v1/audio/transcriptions/jobs",
        files={"file": ("audio.wav", data, "audio/wav")},
        data=form,
        timeout=120,
    )
    assert response.status_code == 202, response.text
    return response.json()


def job(job_id: str) -> dict:
    response = requests.get(f"{BASE_URL}/v1/audio/jobs/{job_id}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_job(job_id: str, done, timeout: float, what: str) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = job(job_id)
        if done(current):
            return current
        if current["status"] in ("failed", "cancelled"):
            pytest.fail(f"job {job_id} {current['status']}: {current['error']}")
        time.sleep(1)
    pytest.fail(f"{what} not within {timeout:.0f} s: {job(job_id)}")


def results(job_id: str) -> dict[str, str]:
    out = {}
    for name in FORMATS:
        response = requests.get(
            f"{BASE_URL}/v1/audio/jobs/{job_id}/result",
            params={"response_format": name},
            timeout=60,
        )
        assert response.status_code == 200, (name, response.text)
        out[name] = response.text
    return out


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def restarted(request, tmp_path_factory, testdata):
    """Phase 1: a finished job, and a long one stopped mid-way; then the restart."""
    backend = request.param
    folder = tmp_path_factory.mktemp(f"restart-{backend}")
    args = {}
    if backend == "postgresql":
        args["job_store_url"] = request.getfixturevalue("postgres_url")
    server = MakeServe(write_config(folder, **args), folder / "data", folder / "serve.log")
    try:
        server.start()
        finished = submit((testdata / "pyannote/sample.wav").read_bytes(), response_format="srt")
        wait_for_job(finished["id"], lambda j: j["status"] == "succeeded", 300, "the short job")
        before = results(finished["id"])
        running = submit(long_conversation(testdata), response_format="json")
        at_stop = wait_for_job(
            running["id"],
            lambda j: j["pieces"]["done"] >= PIECES_BEFORE_STOP,
            600,
            f"{PIECES_BEFORE_STOP} pieces of the long job",
        )
        stopped = time.monotonic()
        server.crash()
        stop_s = time.monotonic() - stopped
        restart_s = server.start()
        yield {
            "backend": backend,
            "finished": finished["id"],
            "before": before,
            "running": running["id"],
            "at_stop": at_stop,
            "stop_s": stop_s,
            "restart_s": restart_s,
            "data": sorted(p.name for p in (folder / "data").iterdir()),
        }
    finally:
        server.stop()


def test_a_finished_job_and_its_result_in_every_format_survive(restarted):
    finished = job(restarted["finished"])
    assert finished["status"] == "succeeded", finished
    assert results(restarted["finished"]) == restarted["before"]
    print(
        f"{restarted['backend']}: stopped in {restarted['stop_s']:.0f} s, healthy again "
        f"{restarted['restart_s']:.0f} s after `make serve`; data dir: {restarted['data']}; "
        f"the finished job's {len(FORMATS)} formats are unchanged"
    )


def test_a_running_job_resumes_after_the_restart(restarted):
    at_stop = restarted["at_stop"]
    done = wait_for_job(restarted["running"], lambda j: j["status"] == "succeeded", 900, "resume")
    pieces = done["pieces"]
    print(
        f"{restarted['backend']}: at the stop {at_stop['pieces']}, status {at_stop['status']}; "
        f"after the restart {pieces}, attempts {done['attempts']}"
    )
    assert pieces["reused"] >= at_stop["pieces"]["done"] >= 3, (at_stop, done)
    assert pieces["reused"] < pieces["total"] == pieces["done"], done  # the rest was decoded
    response = requests.get(f"{BASE_URL}/v1/audio/jobs/{restarted['running']}/result", timeout=60)
    assert len(response.json()["text"].split()) > 500, response.text[:200]
