"""Small uploads that decode to a lot of audio: does a replica's memory stay bounded?

Starts ``serve run serve_config.cpu.yaml`` (what ``make serve`` runs, on another port),
then sends ``--silent`` concurrent 4-hour FLACs of digital silence (about 730 KB each) and
``--speech`` concurrent 10-minute speech files, in json. It prints each replica's peak
resident memory above its idle level (sampled every half second), the answers by status
code (a 503 must carry Retry-After), the wall time of one 4-hour file alone, and whether
``/health`` answers 200 at the end.

    python load/bench_amplification.py [--silent 16] [--speech 16] [--port 8131]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
import soundfile as sf
import yaml
from _server import REPO, long_conversation, replica_memory_mb

RATE = 16000


def silent_flac(hours: float) -> bytes:
    """Digital silence as FLAC, written in blocks (never the whole signal in memory)."""
    buffer = io.BytesIO()
    block = np.zeros(RATE * 60, np.int16)
    with sf.SoundFile(buffer, "w", RATE, 1, format="FLAC", subtype="PCM_16") as out:
        for _ in range(int(hours * 60)):
            out.write(block)
    return buffer.getvalue()


def speech_flac(minutes: float) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, long_conversation(minutes), RATE, format="FLAC")
    return buffer.getvalue()


@contextlib.contextmanager
def served(port: int):
    """``serve run`` of the CPU config on ``port``, in its own process group."""
    config = yaml.safe_load((REPO / "serve_config.cpu.yaml").read_text())
    config["http_options"].update(host="127.0.0.1", port=port)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as file:
        yaml.safe_dump(config, file)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a cluster of its own
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "serve"), "run", file.name],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{base}/health", timeout=10).status_code == 200:
                    break
            if process.poll() is not None:
                raise SystemExit("serve run exited before the application was healthy")
            time.sleep(1)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(60)
        subprocess.run(
            [str(Path(sys.executable).parent / "ray"), "stop", "--force"],
            capture_output=True,
        )
        Path(file.name).unlink(missing_ok=True)


class MemorySampler:
    """Each replica's largest resident memory while the load runs."""

    def __init__(self):
        self.peak: dict[str, float] = collections.defaultdict(float)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                for name, memory in replica_memory_mb("speakerscribe").items():
                    self.peak[name] = max(self.peak[name], memory["rss_mb"])
            self._stop.wait(0.5)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def post(base: str, name: str, data: bytes) -> tuple[int, bool, float]:
    started = time.perf_counter()
    try:
        response = requests.post(
            f"{base}/v1/audio/transcriptions",
            files={"file": (name, data)},
            data={"response_format": "json"},
            timeout=3600,
        )
    except requests.RequestException:
        return 0, False, time.perf_counter() - started
    retry_after = "retry-after" in {k.lower() for k in response.headers}
    return response.status_code, retry_after, time.perf_counter() - started


def run_load(base: str, label: str, name: str, data: bytes, count: int) -> None:
    idle = {k: v["rss_mb"] for k, v in replica_memory_mb("speakerscribe").items()}
    started = time.perf_counter()
    with MemorySampler() as sampler, ThreadPoolExecutor(count) as pool:
        answers = list(pool.map(lambda _: post(base, name, data), range(count)))
    wall = time.perf_counter() - started
    statuses = collections.Counter(status for status, _, _ in answers)
    bad_503 = sum(1 for status, retry, _ in answers if status == 503 and not retry)
    print(f"\n{label}: {count} concurrent, {len(data) / 1e6:.2f} MB each, {wall:.1f} s in all")
    print(
        "  answers: " + ", ".join(f"{s or 'no answer'} x{n}" for s, n in sorted(statuses.items()))
    )
    print(f"  503s without Retry-After: {bad_503}")
    print(f"  {'replica':<32} {'idle MB':>8} {'peak MB':>8} {'growth MB':>10}")
    for replica in sorted(idle):
        peak = max(sampler.peak.get(replica, 0.0), idle[replica])
        print(f"  {replica:<32} {idle[replica]:>8.0f} {peak:>8.0f} {peak - idle[replica]:>10.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--silent", type=int, default=16, help="concurrent 4-hour silent FLACs")
    parser.add_argument("--speech", type=int, default=16, help="concurrent 10-minute files")
    parser.add_argument("--port", type=int, default=8131)
    args = parser.parse_args()

    import ray

    silence, speech = silent_flac(4.0), speech_flac(10.0)
    with served(args.port) as base:
        ray.init(address="auto", namespace="serve", log_to_driver=False)
        status, _, alone = post(base, "silence.flac", silence)
        print(f"one 4-hour silent FLAC alone, json: {status} in {alone:.1f} s")
        if args.silent:
            run_load(base, "4-hour silent FLACs", "silence.flac", silence, args.silent)
        if args.speech:
            run_load(base, "10-minute speech files", "speech.flac", speech, args.speech)
        health = requests.get(f"{base}/health", timeout=30).status_code
        print(f"\n/health at the end: {health}")
    print(
        f"command: python load/bench_amplification.py --silent {args.silent} "
        f"--speech {args.speech} --port {args.port}"
    )


if __name__ == "__main__":
    main()
