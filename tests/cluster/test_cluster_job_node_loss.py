"""The node whose runner works on a job is lost mid-job: the job still succeeds.

Two JobRunner replicas, one per node (``max_replicas_per_node: 1``), one job each. The
worker node's processes are killed while both jobs are part-way; the worker's job goes
stale (``job_stale_after_s``), is queued again, and the runner on the head finishes it
after its own, from the pieces the lost runner had kept in the job store, without
decoding them again. Then the worker is started again, as the node-loss test does, for
the tests after this one; its runner comes back with it.
"""

from __future__ import annotations

import time

import pytest
import requests
from cluster_harness import (
    BASE_URL,
    STAGES,
    deployment_statuses,
    healthy,
    minimum_running,
    nodes,
    replica_actors,
    report,
    wait_for,
    wav_bytes,
    write_artifact,
)

pytestmark = pytest.mark.cluster

PIECES_BEFORE_KILL = 2


def runner_nodes() -> list[str]:
    names = {node_id: info["name"] for node_id, info in nodes().items()}
    return sorted(names.get(a["node_id"], "?") for a in replica_actors(deployment="JobRunner"))


def job(job_id: str) -> dict | None:
    """The job, or None while the cluster recovers (a lost ingress replica, say)."""
    try:
        response = requests.get(f"{BASE_URL}/v1/audio/jobs/{job_id}", timeout=30)
    except requests.RequestException:
        return None
    return response.json() if response.status_code == 200 else None


def alive_workers() -> list[str]:
    return [i for i, n in nodes().items() if n["name"] == "worker" and n["state"] == "ALIVE"]


def test_a_job_survives_the_loss_of_its_runners_node(cluster, speech_long):
    wait_for(minimum_running, 240, "every stage at its minimum")
    wait_for(lambda: runner_nodes() == ["head", "worker"], 120, "one JobRunner on each node")
    data = wav_bytes(speech_long)
    ids = []
    for _ in range(2):
        response = requests.post(
            f"{BASE_URL}/v1/audio/transcriptions/jobs",
            files={"file": ("long.wav", data, "audio/wav")},
            data={"response_format": "json"},
            timeout=120,
        )
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])

    def both_part_way():
        jobs = [job(i) for i in ids]
        ready = all(j and j["status"] == "running" for j in jobs)
        return ready and all(j["pieces"]["done"] >= PIECES_BEFORE_KILL for j in jobs) and jobs

    at_kill = wait_for(both_part_way, 600, f"both jobs {PIECES_BEFORE_KILL} pieces in")
    killed = time.monotonic()
    cluster.raylet("worker").kill()
    cluster.kill_node_processes("worker")  # the node is gone: every process on it
    finished = [
        wait_for(lambda i=i: (j := job(i)) and j["status"] in ("succeeded", "failed") and j, 900, i)
        for i in ids
    ]
    figures = {
        "at_kill": at_kill,
        "finished": finished,
        "seconds_after_kill": round(time.monotonic() - killed, 1),
    }
    write_artifact("job_node_loss.json", figures)
    try:
        assert [j["status"] for j in finished] == ["succeeded", "succeeded"], finished
        moved = [j for j in finished if j["attempts"] >= 2]  # the lost runner's job
        assert len(moved) == 1, finished
        (before,) = [j for j in at_kill if j["id"] == moved[0]["id"]]
        pieces = moved[0]["pieces"]
        report(
            f"job node loss: both jobs succeeded {figures['seconds_after_kill']:.0f} s after "
            f"the kill; the lost runner's job had {before['pieces']} at the kill, finished "
            f"with {pieces} on attempt {moved[0]['attempts']}"
        )
        assert pieces["reused"] >= before["pieces"]["done"] >= PIECES_BEFORE_KILL, figures
        assert pieces["reused"] < pieces["total"] == pieces["done"], figures
    finally:
        cluster.start_worker()
        wait_for(alive_workers, 120, "the worker alive again")
        wait_for(
            lambda: (
                healthy()
                and set(deployment_statuses().values()) == {"HEALTHY"}
                and set(deployment_statuses()) == set(STAGES)
            ),
            300,
            "Serve healthy, all RUNNING",
        )
