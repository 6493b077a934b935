"""Find a running application's replica actors (for fault tests, benchmarks and the soak).

Serve names each replica actor ``SERVE_REPLICA::<app>#<deployment>#<id>`` in the ``serve``
namespace; listing named actors works without Ray's dashboard (which ``list_actors`` needs).
"""

from __future__ import annotations

import os
from pathlib import Path

import ray

PREFIX = "SERVE_REPLICA::"


def replica_actors(app: str | None = None) -> list[tuple[str, str, "ray.actor.ActorHandle"]]:
    """(app, deployment, handle) of every live replica, optionally of one application."""
    found = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        name = entry["name"]
        if not name.startswith(PREFIX):
            continue
        app_name, deployment, _ = name[len(PREFIX):].split("#", 2)
        if app is None or app_name == app:
            found.append((app_name, deployment, ray.get_actor(name, namespace=entry["namespace"])))
    return found


def _memory_of_self(_replica) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return {"rss_mb": fields.get("VmRSS", 0.0), "peak_mb": fields.get("VmHWM", 0.0)}


def replica_memory_mb(app: str | None = None) -> dict[str, dict[str, float]]:
    """Resident and peak resident memory (MB) of each replica process, keyed 'app/deployment'."""
    memory = {}
    for app_name, deployment, handle in replica_actors(app):
        memory[f"{app_name}/{deployment}"] = ray.get(handle.__ray_call__.remote(_memory_of_self), timeout=30)
    return memory
