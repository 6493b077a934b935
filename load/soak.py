"""Soak: the application at saturation for a while; does anything leak or fail?

Starts the application itself, keeps ``--clients`` closed-loop clients busy for
``--minutes`` with a mix of real clips and options (diarization on and off, formats,
word timestamps, separation), then prints requests served, errors by status, and the
resident memory of every replica at the start and the end.

The same load runs for ``--warmup-minutes`` first and is not counted: a replica's
resident memory climbs to its working set at full concurrency (allocator arenas per
thread, the largest decoded files in flight at once) and then stays there. Growth from
that start is what a leak would show; memory is also sampled every minute, so a climb
and a plateau can be told apart.

    python load/soak.py [--minutes 10] [--clients 8] [--warmup-minutes 4]
"""

from __future__ import annotations

import argparse
import collections
import itertools
import random
import threading
import time

import requests
from _server import replica_memory_mb, running_app, testdata_dir

CLIPS = [
    "faster-whisper/jfk.flac",
    "faster-whisper/hotwords.mp3",
    "pyannote/sample.wav",
    "pyannote/dev01.wav",
    "speechbrain/spk1_snt1.wav",
    "speechbrain/spk2_snt3.wav",
]
OPTIONS = [
    {"enable_speaker_diarization": "false"},
    {"response_format": "diarized_json"},
    {"response_format": "verbose_json", "timestamp_granularities[]": "word"},
    {"response_format": "srt"},
    {"response_format": "vtt", "enable_vocal_separation": "true"},
    {"stream": "true"},
]

# Readings are taken at rest, this long after the last response: every replica has
# returned its freed heap to the OS by then (settings.heap_trim_interval_s is 10 s).
SETTLE_S = 12.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--warmup-minutes", type=float, default=4.0
    )  # 2 min fell short of the working set
    parser.add_argument("--port", type=int, default=8127)
    args = parser.parse_args()

    clips = [(name, (testdata_dir() / name).read_bytes()) for name in CLIPS]
    lock = threading.Lock()

    def saturate(url: str, minutes: float, statuses: collections.Counter) -> None:
        """``--clients`` closed-loop clients for ``minutes``; memory sampled each minute."""
        stop_at = time.time() + minutes * 60

        def client(seed: int) -> None:
            rng = random.Random(seed)
            for _ in itertools.count():
                if time.time() >= stop_at:
                    return
                name, data = rng.choice(clips)
                try:
                    response = requests.post(
                        url, files={"file": (name, data)}, data=rng.choice(OPTIONS), timeout=600
                    )
                    status = response.status_code
                except requests.RequestException as error:
                    status = type(error).__name__
                with lock:
                    statuses[status] += 1

        threads = [threading.Thread(target=client, args=(seed,)) for seed in range(args.clients)]
        for thread in threads:
            thread.start()
        next_sample = time.time() + 60
        while any(thread.is_alive() for thread in threads):
            time.sleep(1)
            if time.time() >= next_sample:
                next_sample += 60
                memory = replica_memory_mb()
                line = ", ".join(
                    f"{name.split('/')[-1]} {m['rss_mb']:.0f}/{m['anon_mb']:.0f}"
                    for name, m in sorted(memory.items())
                )
                print(f"  {time.strftime('%H:%M:%S')} RSS/anon MB: {line}", flush=True)

    statuses: collections.Counter = collections.Counter()
    with running_app(args.port) as base:
        url = f"{base}/v1/audio/transcriptions"
        print(f"warm-up: {args.warmup_minutes:g} min at saturation (not counted)", flush=True)
        saturate(url, args.warmup_minutes, collections.Counter())
        time.sleep(SETTLE_S)
        start_memory = replica_memory_mb()
        print(f"soak: {args.minutes:g} min", flush=True)
        saturate(url, args.minutes, statuses)
        time.sleep(SETTLE_S)
        end_memory = replica_memory_mb()

    served = statuses.get(200, 0)
    print(f"\nrequests served (200): {served}, in {args.minutes:g} min with {args.clients} clients")
    errors = {k: v for k, v in statuses.items() if k != 200}
    print(f"errors by status: {errors or 'none'}")
    # Readings are taken with no request in flight. RSS splits into the replica's own heap
    # (anon: where a leak shows) and shared pages (mostly Ray's object store, mapped into
    # every process that reads an argument from it without a copy, bounded by the store's
    # size); peak (VmHWM) only grows when a replica needs more than it ever did.
    columns = [("rss_mb", "RSS"), ("anon_mb", "anon"), ("shmem_mb", "shared"), ("peak_mb", "peak")]
    header = "".join(f" | {label} start → end (growth)" for _, label in columns)
    print(f"{'replica':<30}{header}")
    for name in sorted(end_memory):
        cells = []
        for key, _ in columns:
            first = start_memory.get(name, {}).get(key, 0.0)
            last = end_memory[name][key]
            growth = f"{(last - first) / first * 100:+.1f}%" if first else "n/a"
            cells.append(f"{first:.0f} → {last:.0f} MB ({growth})")
        print(f"{name:<30}" + "".join(f" | {cell}" for cell in cells))
    print(
        f"\ncommand: python load/soak.py --minutes {args.minutes:g} --clients {args.clients} "
        f"--warmup-minutes {args.warmup_minutes:g}"
    )


if __name__ == "__main__":
    main()
