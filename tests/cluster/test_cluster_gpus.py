"""Fractional GPUs: at the config's 0.5, two Transcriber replicas share one logical GPU.

The application's own Transcriber and its neighbours (VocalSeparator 0.5, Diarizer 0.25)
sit wherever Serve spread them, so which replicas pair up on a GPU is chance. The test
therefore starts three more Transcriber replicas with exactly the config's options,
pinned to one node (whose two GPUs have room for three halves): however Ray places them,
two of the three must share a GPU. Placement and resources come from Ray's state API,
the GPU each replica holds from ``ray.get_gpu_ids()`` inside it.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
from cluster_harness import (
    cluster_config,
    deployment_config,
    nodes,
    replica_actors,
    report,
    wait_for,
    wait_for_minimum,
    write_artifact,
)

pytestmark = pytest.mark.cluster

PROBE_APP = "gpu-share"
PROBES = 3


def gpu_holders() -> list[dict]:
    """Every alive Serve replica that asked for a GPU: node, fraction and GPU index."""
    import ray

    def held_gpus(_replica) -> tuple[list, str | None]:  # runs in the replica (by value)
        import os

        import ray

        return [int(i) for i in ray.get_gpu_ids()], os.environ.get("CUDA_VISIBLE_DEVICES")

    names = {node_id: info["name"] for node_id, info in nodes().items()}
    holders = []
    for actor in replica_actors(app=None):
        fraction = (actor["required_resources"] or {}).get("GPU", 0)
        if not fraction:
            continue
        handle = ray.get_actor(actor["name"], namespace=actor["ray_namespace"])
        gpu_ids, visible = ray.get(handle.__ray_call__.remote(held_gpus), timeout=60)
        holders.append(
            {
                "replica": actor["class_name"].removeprefix("ServeReplica:"),
                "node": names.get(actor["node_id"], actor["node_id"][:8]),
                "gpu_fraction": fraction,
                "gpu_ids": gpu_ids,
                "CUDA_VISIBLE_DEVICES": visible,
                "pid": actor["pid"],
            }
        )
    return holders


def test_two_transcriber_replicas_share_one_gpu(cluster):
    from ray import serve

    from deployments.transcriber import Transcriber
    from speakerscribe.settings import load_settings

    config = cluster_config()
    transcriber = deployment_config(config, "Transcriber")
    fraction = transcriber["ray_actor_options"]["num_gpus"]
    assert fraction == 0.5  # as serve_config.yaml says
    wait_for_minimum()

    # the node with the most GPU room takes the three probe replicas
    used: dict[str, float] = defaultdict(float)
    for holder in gpu_holders():
        used[holder["node"]] += holder["gpu_fraction"]
    node = min(("head", "worker"), key=lambda name: used[name])
    assert used[node] <= 0.5, dict(used)  # room for three halves on its two GPUs

    (app,) = config["applications"]
    options = {**transcriber["ray_actor_options"], "resources": {f"cluster_test_{node}": 1}}
    probe = Transcriber.options(  # type: ignore[attr-defined]
        num_replicas=PROBES,
        ray_actor_options=options,
        max_ongoing_requests=transcriber["max_ongoing_requests"],
        user_config=transcriber["user_config"],
    ).bind(load_settings(**app["args"]).transcriber)
    serve.run(probe, name=PROBE_APP, route_prefix=None, blocking=False)
    try:
        wait_for(
            lambda: len(replica_actors(PROBE_APP, "Transcriber")) == PROBES,
            240,
            f"{PROBES} probe Transcriber replicas",
        )
        holders = gpu_holders()
    finally:
        serve.delete(PROBE_APP)

    report(f"fractional GPUs (state API + ray.get_gpu_ids(); probes pinned to the {node}):")
    for h in sorted(holders, key=lambda h: (h["node"], h["gpu_ids"], h["replica"])):
        report(
            f"  {h['node']:<6} GPU {h['gpu_ids']} ({h['gpu_fraction']:g})  {h['replica']}"
            f"  CUDA_VISIBLE_DEVICES={h['CUDA_VISIBLE_DEVICES']}"
        )
    write_artifact("gpu_placement.json", {"probe_node": node, "holders": holders})

    transcribers = [h for h in holders if h["replica"].endswith(":Transcriber")]
    assert all(h["gpu_fraction"] == fraction and len(h["gpu_ids"]) == 1 for h in transcribers)
    assert all(h["CUDA_VISIBLE_DEVICES"] == str(h["gpu_ids"][0]) for h in holders)
    load: dict[tuple[str, int], float] = defaultdict(float)
    sharing: dict[tuple[str, int], list[str]] = defaultdict(list)
    for h in holders:
        key = (h["node"], h["gpu_ids"][0])
        load[key] += h["gpu_fraction"]
        if h["replica"] == f"{PROBE_APP}:Transcriber":
            sharing[key].append(h["replica"])
    assert all(total <= 1.0 + 1e-9 for total in load.values()), dict(load)  # never oversubscribed
    shared = [key for key, replicas in sharing.items() if len(replicas) == 2]
    assert shared, dict(sharing)  # two Transcriber replicas on one logical GPU
