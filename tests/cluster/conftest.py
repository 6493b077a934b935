"""tests/cluster: a local two-node Ray cluster running the production config.

`make test-cluster` runs this suite; `make test` does not (pyproject's testpaths). The
session fixture starts the head and the worker, connects this process as a driver (for
``serve.status()`` and Ray's state API), ``serve deploy``s ``cluster_config()`` through
the head's dashboard and waits until /health answers; at the end it kills exactly the
processes of this cluster. See cluster_harness.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cluster_harness import (
    BASE_URL,
    CLUSTER_ROOT,
    DATA_DIR,
    GCS_ADDRESS,
    HOST,
    REPORT,
    LocalCluster,
    cluster_config,
    cluster_processes,
    decode,
    healthy,
    keep_loopback,
    kill_processes,
    report,
    wait_for,
    wait_for_minimum,
)


def pytest_terminal_summary(terminalreporter):
    if REPORT:
        terminalreporter.section("cluster figures")
        for line in REPORT:
            terminalreporter.write_line(line)


def pytest_collection_modifyitems(config, items):
    """Destructive tests last: autoscaling, GPUs, replica loss, then node loss."""
    order = ["autoscaling", "gpus", "replica_loss", "node_loss"]

    def rank(item) -> int:
        stem = Path(str(item.path)).stem
        return next((i for i, key in enumerate(order) if stem.endswith(key)), len(order))

    here = Path(__file__).parent
    ours = [item for item in items if here in Path(str(item.path)).parents]
    if ours:
        items[:] = [item for item in items if item not in ours] + sorted(ours, key=rank)


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    """Head + worker started, the test config deployed and healthy; all torn down after."""
    started = time.monotonic()
    local = LocalCluster()
    kill_processes(cluster_processes())  # anything left from an earlier run of this suite
    shutil.rmtree(DATA_DIR, ignore_errors=True)  # and its jobs
    before = _default_address_file()
    local.prepare_auth()
    try:
        local.start_head()
        local.start_worker()
        # this process as a driver of that cluster (token auth, loopback kept)
        os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=local.env["RAY_AUTH_TOKEN"])
        os.environ.pop("RAY_ADDRESS", None)
        import ray

        keep_loopback()
        ray.init(
            address=GCS_ADDRESS,
            namespace="speakerscribe-cluster-test",
            log_to_driver=False,
            configure_logging=False,
            _temp_dir=str(CLUSTER_ROOT / "head"),
        )
        # a plain ray.init() elsewhere reads /tmp/ray/ray_current_cluster: still not ours
        assert _default_address_file() == before, "the cluster wrote /tmp/ray's address file"
        assert (CLUSTER_ROOT / "head" / "ray_current_cluster").read_text().strip() == GCS_ADDRESS
        alive = [n for n in ray.nodes() if n["Alive"]]
        assert len(alive) == 2 and {n["NodeManagerAddress"] for n in alive} == {HOST}, alive
        deploy_started = time.monotonic()
        local.deploy(cluster_config())
        wait_for(healthy, 600, "the application's /health")
        wait_for_minimum(300)
        report(
            f"cluster: ray start head + worker, serve deploy until healthy "
            f"{time.monotonic() - deploy_started:.0f} s; ready after "
            f"{time.monotonic() - started:.0f} s"
        )
        yield local
    finally:
        with contextlib.suppress(Exception):
            import ray

            ray.shutdown()
        local.stop()
        report(f"suite wall time (cluster up to torn down): {time.monotonic() - started:.0f} s")


def _default_address_file() -> str | None:
    path = Path("/tmp/ray/ray_current_cluster")
    return path.read_text() if path.exists() else None


@pytest.fixture(scope="session")
def base_url(cluster) -> str:
    return BASE_URL


@pytest.fixture(scope="session")
def openai_client(cluster):
    from openai import OpenAI

    return OpenAI(base_url=f"{BASE_URL}/v1", api_key="not-needed", timeout=600, max_retries=0)


@pytest.fixture(scope="session")
def speech_long(testdata) -> np.ndarray:
    """About 5.6 minutes of real conversation: the shared recordings back to back."""
    names = [
        "diarization/libri_9spk.wav",
        "diarization/libri_6spk.wav",
        "diarization/EN2002a_30s.wav",
        "pyannote/sample.wav",
        "pyannote/dev00.wav",
    ]
    return np.concatenate([decode(testdata / n) for n in names])


@pytest.fixture(scope="session")
def sparse_speech(testdata) -> np.ndarray:
    """About 4.7 minutes, mostly silence: six short utterances of two speakers, 45 s apart."""
    clips = [decode(testdata / f"speechbrain/spk{s}_snt{n}.wav") for n in (1, 2, 3) for s in (1, 2)]
    gap = np.zeros(45 * 16000, dtype=np.float32)
    audio = np.concatenate([x for clip in clips for x in (clip, gap)])
    return audio[: 300 * 16000]
