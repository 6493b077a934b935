"""Faults and overload: a killed Transcriber replica, and more requests than the queues hold."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

pytestmark = pytest.mark.e2e


def _post(url: str, data: bytes, timeout: float = 300) -> tuple[int, float, dict]:
    started = time.perf_counter()
    try:
        response = requests.post(url, files={"file": ("clip.flac", data)}, timeout=timeout)
    except requests.RequestException as error:  # a hang or a dropped connection fails the test
        return -1, time.perf_counter() - started, {"exception": repr(error)}
    return (
        response.status_code,
        time.perf_counter() - started,
        {k.lower(): v for k, v in response.headers.items()},
    )


@pytest.fixture()
def app_named(server):
    """Start an extra application of the same deployments; delete it afterwards."""
    from ray import serve

    names = []

    def start(name: str, application) -> str:
        serve.run(application, name=name, route_prefix=f"/{name}")
        names.append(name)
        return f"{server}/{name}"

    yield start
    for name in names:
        serve.delete(name)


def test_killed_transcriber_replica(app_named, testdata):
    import ray

    from deployments.introspection import replica_actors
    from pipeline_graph import build
    from speakerscribe.settings import load_settings

    base = app_named("faulty", build(load_settings(enable_speaker_diarization=False)))
    url = f"{base}/v1/audio/transcriptions"
    jfk = (testdata / "faster-whisper/jfk.flac").read_bytes()
    assert _post(url, jfk)[0] == 200

    (replica,) = [
        handle for _, deployment, handle in replica_actors("faulty") if deployment == "Transcriber"
    ]
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(_post, url, jfk, 120) for _ in range(8)]
        time.sleep(1.0)  # requests are in flight
        ray.kill(replica, no_restart=False)
        outcomes = [f.result() for f in futures]
    print("in flight when the Transcriber was killed:", sorted(s for s, _, _ in outcomes))
    # the ingress sends a lost call again (stage_retries), and Serve restarts the replica well
    # inside the request's deadline: nobody sees the kill (with stage_retries=0: 8 x 503)
    for status, seconds, headers in outcomes:
        assert status == 200, (status, headers)
        assert seconds < 120
    # Serves again within 30 s of the kill.
    deadline = time.time() + 30
    while time.time() < deadline:
        if _post(url, jfk, 30)[0] == 200:
            break
        time.sleep(1)
    else:
        pytest.fail("no successful answer within 30 s of killing the Transcriber replica")


def test_overload_gets_503_with_retry_after(app_named, testdata):
    from deployments.diarizer import Diarizer
    from deployments.ingress import SpeechIngress
    from deployments.jobs import JobRunner
    from deployments.separator import VocalSeparator
    from deployments.stages import StageHandles
    from deployments.transcriber import Transcriber
    from speakerscribe.settings import load_settings

    settings = load_settings(enable_speaker_diarization=False)
    stages = StageHandles(
        VocalSeparator.bind(settings.separator),
        Transcriber.bind(settings.transcriber),
        Diarizer.bind(settings.diarizer),
    )
    tight = SpeechIngress.options(max_ongoing_requests=1, max_queued_requests=1).bind(
        settings, stages, JobRunner.bind(settings, stages)
    )
    base = app_named("tight", tight)
    sample = (testdata / "pyannote/sample.wav").read_bytes()
    with ThreadPoolExecutor(10) as pool:
        outcomes = list(
            pool.map(lambda _: _post(f"{base}/v1/audio/transcriptions", sample), range(10))
        )
    statuses = [status for status, _, _ in outcomes]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(503) >= 1 and statuses.count(200) >= 2, statuses
    for status, _, headers in outcomes:
        if status == 503:
            assert headers.get("retry-after") == "5"
