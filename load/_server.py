"""Start the application in-process for a benchmark, and read its replicas' memory."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from deployments.introspection import replica_memory_mb  # noqa: E402,F401  (re-exported)


def testdata_dir() -> Path:
    override = os.environ.get("SPEAKERSCRIBE_TESTDATA")
    return Path(override) if override else REPO.parent / "shared" / "testdata"


@contextlib.contextmanager
def running_app(port: int, **settings):
    """ray.init + serve.run of pipeline_graph.build(settings) on 127.0.0.1:port."""
    with running_apps(port, {"bench": settings}) as bases:
        yield bases["bench"]


@contextlib.contextmanager
def running_apps(port: int, apps: dict[str, dict]):
    """Several applications side by side, ``name`` → its base URL.

    One app keeps the route ``/``; with more, each is served under ``/<name>``, so a
    benchmark can drive them in turn within one run (this machine is noisy over time).
    """
    import ray
    from ray import serve

    from pipeline_graph import build
    from speakerscribe.settings import load_settings

    # as the shipped configs: Ray's per-task event records off (see README, "Memory")
    os.environ.setdefault("RAY_enable_task_events", "0")
    ray.init(
        num_cpus=8 * len(apps),
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        bases = {}
        for name, settings in apps.items():
            prefix = "/" if len(apps) == 1 else f"/{name}"
            serve.run(build(load_settings(**settings)), name=name, route_prefix=prefix)
            bases[name] = f"http://127.0.0.1:{port}{prefix.rstrip('/')}"
        wait_healthy(bases.values())
        yield bases
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()
        ray.shutdown()


def wait_healthy(bases, timeout_s: float = 300.0) -> None:
    """Until every application answers /health with 200 (or the time is up)."""
    for base in bases:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{base}/health", timeout=10).status_code == 200:
                    break
            time.sleep(1)


def print_table(rows: list[tuple[str, str]]) -> None:
    """Benchmark figures as aligned ``name  value`` lines."""
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def wav_bytes(audio: np.ndarray, rate: int = 16000) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, audio, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def long_conversation(minutes: float) -> np.ndarray:
    """The shared clips concatenated (with short gaps) and repeated to ``minutes``."""
    from speakerscribe.audio import decode_audio_bytes

    data = testdata_dir()
    names = [
        "pyannote/sample.wav",
        "pyannote/dev00.wav",
        "pyannote/dev01.wav",
        "faster-whisper/jfk.flac",
        "faster-whisper/stereo_diarization.wav",
        *[f"speechbrain/spk{s}_snt{n}.wav" for s in (1, 2) for n in (1, 2, 3)],
    ]
    gap = np.zeros(8000, dtype=np.float32)
    block = np.concatenate(
        [x for n in names for x in (decode_audio_bytes((data / n).read_bytes()), gap)]
    )
    repeats = int(np.ceil(minutes * 60 * 16000 / block.size))
    return np.tile(block, repeats)[: int(minutes * 60 * 16000)]
