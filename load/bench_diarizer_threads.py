"""The bundled diarizer's CPU thread layouts, in process, on the shared clips repeated.

A Ray actor calls the diarizer from whichever pool thread is free. This prints the wall
time of one diarization for each layout, called the way a replica calls it:

- torch intra-op threads (``torch.set_num_threads(cores)``), every call from the thread
  that loaded the model: the best case for intra-op threads;
- the same, called from other threads once a second thread has run torch, as in a replica;
- one torch thread, called from other threads;
- the default: each batch split over ``cores`` workers of one torch thread each
  (``speakerscribe.diarization.sub_batches``), called from other threads.

    python load/bench_diarizer_threads.py [--minutes 3] [--repeat 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import torch
from _server import long_conversation, print_table

from speakerscribe.devices import resolve_cpu_threads
from speakerscribe.diarization.diarizer import load_diarizer
from speakerscribe.diarization.sub_batches import SubBatches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--cpu-threads", type=int, default=0, help="0: the cores, at most 4")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    threads = resolve_cpu_threads(args.cpu_threads)
    audio = long_conversation(args.minutes)
    diarizer = load_diarizer("bundled", cpu_threads=args.cpu_threads)
    callers = [ThreadPoolExecutor(1, thread_name_prefix="caller") for _ in range(2)]
    calls = 0

    def timed(on_callers: bool) -> float:
        """One call at a time, as a replica's lock allows; on callers, each from the next
        of two long-lived threads, as ``asyncio.to_thread`` hands them out."""
        nonlocal calls
        started = time.perf_counter()
        if on_callers:
            callers[calls % len(callers)].submit(diarizer, audio).result()
            calls += 1
        else:
            diarizer(audio)
        return time.perf_counter() - started

    def median(on_callers: bool) -> float:
        return statistics.median(timed(on_callers) for _ in range(2 * args.repeat))

    diarizer.pipeline.use_sub_batches(SubBatches(1))
    torch.set_num_threads(threads)
    rows = [(f"{args.minutes:g} min, {threads} intra-op threads, loading thread", median(False))]
    rows.append((f"{args.minutes:g} min, {threads} intra-op threads, other threads", median(True)))
    torch.set_num_threads(1)
    rows.append((f"{args.minutes:g} min, 1 thread, other threads", median(True)))
    diarizer.use_cpu_threads(args.cpu_threads)
    rows.append(
        (f"{args.minutes:g} min, {threads} workers x 1 thread, other threads", median(True))
    )
    best = rows[0][1]
    print_table(
        [(name, f"{seconds:.2f} s = {seconds / best:.2f}x the first") for name, seconds in rows]
    )
    print(f"\ncommand: python load/bench_diarizer_threads.py {' '.join(sys.argv[1:])}".rstrip())


if __name__ == "__main__":
    main()
