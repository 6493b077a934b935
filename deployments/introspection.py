"""Find a running application's replica actors (for fault tests, benchmarks and the soak).

Serve names each replica actor ``SERVE_REPLICA::<app>#<deployment>#<id>`` in the ``serve``
namespace; listing named actors works without Ray's dashboard (which ``list_actors`` needs).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, cast

import ray

if TYPE_CHECKING:  # pragma: no cover - imports for type checkers only
    from ray.actor import ActorMethod

PREFIX = "SERVE_REPLICA::"


def replica_actors(app: str | None = None) -> list[tuple[str, str, ray.actor.ActorHandle]]:
    """(app, deployment, handle) of every live replica, optionally of one application."""
    found = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        name = entry["name"]
        if not name.startswith(PREFIX):
            continue
        app_name, deployment, _ = name[len(PREFIX) :].split("#", 2)
        if app is None or app_name == app:
            found.append((app_name, deployment, ray.get_actor(name, namespace=entry["namespace"])))
    return found


_STATUS_FIELDS = {
    "VmRSS": "rss_mb",
    "VmHWM": "peak_mb",
    "RssAnon": "anon_mb",
    "RssFile": "file_mb",
    "RssShmem": "shmem_mb",
}


def _memory_of_self(_replica) -> dict[str, float]:
    fields = dict.fromkeys(_STATUS_FIELDS.values(), 0.0)
    for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in _STATUS_FIELDS:
            fields[_STATUS_FIELDS[key]] = int(value.split()[0]) / 1024
    return fields


def replica_memory_mb(app: str | None = None) -> dict[str, dict[str, float]]:
    """Memory (MB) of each replica process, keyed 'app/deployment'.

    ``rss_mb`` is all resident memory; it splits into ``anon_mb`` (the process's own heap,
    where a leak shows), ``file_mb`` and ``shmem_mb`` (mapped files and shared memory,
    which include pages of Ray's object store that arguments are read from without a
    copy, and which come and go with the requests in flight). ``peak_mb`` is VmHWM.
    """
    memory: dict[str, dict[str, float]] = {}
    for app_name, deployment, handle in replica_actors(app):
        # Ray types an ActorHandle's every attribute as Never; this one is an ActorMethod
        call = cast("ActorMethod", handle.__ray_call__)
        memory[f"{app_name}/{deployment}"] = ray.get(call.remote(_memory_of_self), timeout=30)
    return memory
