"""A Transcriber replica's process killed (SIGKILL) under 8 in-flight requests.

With two replicas the ingress sends the lost pieces again (``stage_retries``) and the
other replica answers them: all 8 succeed. With one, they wait for Serve to restart it:
all 8 succeed when that happens within the request's deadline, else they get a 503;
never a dropped connection or a hang.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from cluster_harness import (
    cluster_config,
    decode,
    deployment_config,
    post_audio,
    replica_actors,
    replica_counts,
    report,
    tally,
    wait_for,
    wav_bytes,
    write_artifact,
)

pytestmark = pytest.mark.cluster

IN_FLIGHT = 8
REQUEST_TIMEOUT_S = 240.0  # above what a restart takes here; a hang shows as "timed out"
FIGURES: dict[int, dict] = {}


@pytest.fixture(scope="module")
def pinned_transcribers(cluster):
    """Deploy the config with the Transcriber pinned to N replicas; restore it after."""

    def pin(replicas: int) -> None:
        config = cluster_config()
        scaling = deployment_config(config, "Transcriber")["autoscaling_config"]
        scaling.update(min_replicas=replicas, max_replicas=replicas)
        cluster.deploy(config, name=f"serve_config.cluster.transcriber-{replicas}.yaml")
        wait_for(
            lambda: replica_counts().get("Transcriber") == {"RUNNING": replicas},
            240,
            f"{replicas} RUNNING Transcriber replicas",
        )

    yield pin
    cluster.deploy(cluster_config())
    write_artifact("replica_loss.json", FIGURES)


@pytest.fixture(scope="module")
def minute_of_speech(testdata) -> bytes:
    """60 s of meeting speech (two pieces): long enough to be in flight at the kill."""
    return wav_bytes(
        np.concatenate(
            [decode(testdata / "pyannote/sample.wav"), decode(testdata / "pyannote/dev00.wav")]
        )
    )


@pytest.mark.parametrize("replicas", [2, 1])
def test_killed_transcriber_replica(pinned_transcribers, openai_client, minute_of_speech, replicas):
    pinned_transcribers(replicas)
    audio = minute_of_speech
    assert post_audio(openai_client, audio, "json")[0] == 200

    victim = replica_actors(deployment="Transcriber")[0]
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        sent = time.monotonic()
        futures = [
            pool.submit(post_audio, openai_client, audio, "json", REQUEST_TIMEOUT_S)
            for _ in range(IN_FLIGHT)
        ]
        time.sleep(1.5)  # decoded and chunked: the pieces are at the Transcribers
        os.kill(victim["pid"], signal.SIGKILL)
        killed = time.monotonic()
        outcomes = [future.result() for future in futures]
    answered = time.monotonic() - killed
    in_flight = sum(sent + seconds > killed for _, seconds, _ in outcomes)
    restart_s = wait_for(
        lambda: (
            replica_counts().get("Transcriber") == {"RUNNING": replicas}
            and victim["actor_id"]
            not in {a["actor_id"] for a in replica_actors(deployment="Transcriber")}
            and time.monotonic() - killed
        ),
        240,
        "the Transcriber back at full strength",
        every=0.5,
    )
    failed = [o for o in outcomes if o[0] != 200]
    FIGURES[replicas] = {
        "replicas": replicas,
        "sent": IN_FLIGHT,
        "in_flight_at_kill": in_flight,
        "outcomes": tally(outcomes),
        "failed": len(failed),
        "latencies_s": sorted(round(s, 1) for _, s, _ in outcomes),
        "all_answered_s_after_kill": round(answered, 1),
        "full_strength_s_after_kill": round(restart_s, 1),
        "notes": [note for _, _, note in failed],
    }
    report(
        f"replica loss, {replicas} Transcriber replica(s), {in_flight} of {IN_FLIGHT} requests in "
        f"flight at the kill: {len(failed)} of {IN_FLIGHT} failed "
        f"{tally(outcomes)}; slowest answer {max(s for _, s, _ in outcomes):.1f} s; back to "
        f"{replicas} RUNNING {restart_s:.1f} s after the kill"
    )

    statuses = [status for status, _, _ in outcomes]
    assert in_flight == IN_FLIGHT  # none had finished before the kill
    assert -1 not in statuses and -2 not in statuses, tally(outcomes)  # no drop, no hang
    assert set(statuses) <= {200, 503}, tally(outcomes)
    if replicas > 1 or restart_s < REQUEST_TIMEOUT_S:
        assert statuses == [200] * IN_FLIGHT, tally(outcomes)
