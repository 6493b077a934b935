"""The worker node's raylet killed (SIGKILL) under load, then the worker started again.

The head can hold every stage at its minimum (the test config's CPU requests are sized
so; the JobRunner keeps one replica per node), so Serve restarts what the worker held on
the head and every request succeeds:
none hangs past its deadline, none gets a 500. Once the worker is back, so is its
capacity: replicas that did not fit on the head are placed on it, and Serve is healthy
with every deployment RUNNING.
"""

from __future__ import annotations

import time

import pytest
from cluster_harness import (
    STAGES,
    ClosedLoopLoad,
    ReplicaTimeline,
    deployment_statuses,
    healthy,
    minimum_running,
    nodes,
    post_audio,
    replica_actors,
    report,
    tally,
    wait_for,
    write_artifact,
)

pytestmark = pytest.mark.cluster

CLIENTS = 4
DEADLINE_S = 240.0  # each request's client-side deadline: past it, a request has hung
BEFORE_KILL_S = 8.0
AFTER_RECOVERY_S = 10.0
TIMELINE = ("SpeechIngress", "VocalSeparator", "Transcriber", "Diarizer")


def placement() -> dict[str, list[str]]:
    """Node name → the stages of the alive replicas on it (Ray's state API)."""
    names = {node_id: info["name"] for node_id, info in nodes().items()}
    where: dict[str, list[str]] = {}
    for actor in replica_actors():
        stage = actor["class_name"].rsplit(":", 1)[1]
        where.setdefault(names.get(actor["node_id"], "?"), []).append(stage)
    return {node: sorted(stages) for node, stages in sorted(where.items())}


def alive_workers() -> list[str]:
    return [i for i, n in nodes().items() if n["name"] == "worker" and n["state"] == "ALIVE"]


def all_healthy() -> bool:
    statuses = deployment_statuses()
    return set(statuses) == set(STAGES) and set(statuses.values()) == {"HEALTHY"}


def test_worker_node_loss(cluster, openai_client, testdata):
    wait_for(minimum_running, 240, "every stage at its minimum")
    sample = (testdata / "pyannote/sample.wav").read_bytes()
    jfk = (testdata / "faster-whisper/jfk.flac").read_bytes()
    clips = [(sample, "diarized_json"), (jfk, "diarized_json"), (jfk, "json")]
    before = placement()
    assert "worker" in before, before  # Serve spread some replicas onto the worker

    load = ClosedLoopLoad(
        CLIENTS,
        lambda k: post_audio(openai_client, *clips[k % len(clips)], timeout=DEADLINE_S),
    )
    (old_worker,) = alive_workers()
    figures: dict = {"clients": CLIENTS, "deadline_s": DEADLINE_S, "placement_before": before}
    killed: float | None = None
    with ReplicaTimeline(stages=TIMELINE) as timeline:
        try:
            load.start()
            time.sleep(BEFORE_KILL_S)
            cluster.raylet("worker").kill()
            killed = time.monotonic()
            timeline.mark("worker raylet killed")
            wait_for(lambda: old_worker not in alive_workers(), 120, "the worker marked dead")
            figures["worker_dead_s"] = round(time.monotonic() - killed, 1)
            timeline.mark("worker marked dead by the GCS")

            def on_head_only():
                where = placement()
                on_head = minimum_running(nodes_alive=1) and "worker" not in where
                return healthy() and on_head and where

            figures["placement_head_only"] = wait_for(on_head_only, 300, "every stage on the head")
            figures["recovered_s"] = round(time.monotonic() - killed, 1)
            timeline.mark("every stage RUNNING on the head")
            time.sleep(AFTER_RECOVERY_S)
            load.stop()
            timeline.mark("load stopped")

            cluster.kill_node_processes("worker")  # whatever the dead raylet left behind
            restarted = time.monotonic()
            cluster.start_worker()
            wait_for(alive_workers, 120, "the worker alive again")
            timeline.mark("worker started again")
            wait_for(lambda: healthy() and all_healthy(), 300, "Serve healthy, all RUNNING")
            figures["back_healthy_s"] = round(time.monotonic() - restarted, 1)
            timeline.mark("Serve healthy, every deployment RUNNING")
        finally:
            load.stop()
            figures.update(
                outcomes=tally(load.outcomes),
                in_flight_at_kill=tally(load.in_flight_at(killed)) if killed else {},
                latencies_s=sorted(round(s, 1) for _, s, _ in load.outcomes),
                notes=sorted({note for status, _, note in load.outcomes if status != 200}),
                placement_after_return=placement() if alive_workers() else None,
                timeline=timeline.samples,
                events=timeline.events,
            )
            write_artifact("node_loss.json", figures)
    (new_worker,) = alive_workers()
    resources = nodes()[new_worker]["resources_total"]
    outcomes = load.outcomes
    slowest = max(s for _, s, _ in outcomes)
    report(
        f"node loss: {len(outcomes)} requests from {CLIENTS} clients around the kill "
        f"({sum(figures['in_flight_at_kill'].values())} in flight at it): "
        f"{figures['outcomes']}, slowest {slowest:.1f} s (deadline {DEADLINE_S:.0f} s)"
    )
    report(
        f"  worker marked dead {figures['worker_dead_s']:.0f} s after the kill; every stage "
        f"RUNNING on the head after {figures['recovered_s']:.0f} s; worker started again, "
        f"Serve healthy {figures['back_healthy_s']:.0f} s later"
    )
    report(f"  replicas before:       {before}")
    report(f"  after the loss:        {figures['placement_head_only']}")
    report(f"  after the worker came back: {figures['placement_after_return']}")
    report(f"  (timeline: {timeline.describe().strip()})".replace("\n", "\n   "))

    statuses = [status for status, _, _ in outcomes]
    assert slowest < DEADLINE_S and -2 not in statuses, figures["outcomes"]  # nothing hangs
    assert 500 not in statuses, figures["notes"]
    assert statuses == [200] * len(statuses), (figures["outcomes"], figures["notes"])
    assert resources.get("CPU") == 4 and resources.get("GPU") == 2, resources
