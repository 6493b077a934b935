"""Cross-request batching: the same concurrent load with batch size 1 and with batching on.

Starts the application twice, side by side in one Ray cluster (max_batch_size=1 under
/unbatched, batching on under /batched), drives each with 1, 4 and 16 closed-loop clients
uploading real clips (transcription only, then the full pipeline with diarization), the
two in turn, ``--repeats`` times (this machine's speed drifts over minutes, so the two are
compared close in time, order alternating), and prints one table of medians: throughput
in audio-seconds per wall-second, p50/p95 latency, mean pieces per Whisper model call,
the Transcriber's busy share and model seconds per piece, and the batched/unbatched
throughput ratio (of the medians, with each repeat's own ratio beside it).

    python load/bench_batching.py [--clients 1 4 16] [--requests-per-client 3]
        [--batch-size 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from _server import running_apps, testdata_dir

CLIPS = [
    "faster-whisper/jfk.flac",
    "faster-whisper/hotwords.mp3",
    "pyannote/sample.wav",
    *[f"speechbrain/spk{s}_snt{n}.wav" for s in (1, 2) for n in (1, 2, 3)],
    "pyannote/dev00.wav",
]
MODES = {
    "transcription": {"enable_speaker_diarization": "false"},
    "full pipeline": {"response_format": "diarized_json"},
}


def transcriber_stats(app: str) -> dict:
    from ray import serve

    return serve.get_deployment_handle("Transcriber", app_name=app).stats.remote().result()


def drive(
    base: str,
    clips: list[tuple[bytes, float]],
    clients: int,
    per_client: int,
    fields: dict,
    app: str = "bench",
) -> dict:
    """Closed loop: each client sends ``per_client`` requests back to back, clips in rotation."""
    latencies: list[float] = []
    audio_seconds = 0.0

    def client(number: int) -> None:
        nonlocal audio_seconds
        for k in range(per_client):
            data, seconds = clips[(number * per_client + k) % len(clips)]
            started = time.perf_counter()
            response = requests.post(
                f"{base}/v1/audio/transcriptions",
                files={"file": ("clip", data)},
                data=fields,
                timeout=1800,
            )
            response.raise_for_status()
            latencies.append(time.perf_counter() - started)
            audio_seconds += seconds

    before = transcriber_stats(app)
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    wall = time.perf_counter() - started
    after = transcriber_stats(app)
    calls = after["model_calls"] - before["model_calls"]
    pieces = after["pieces_served"] - before["pieces_served"]
    model_seconds = after["model_seconds"] - before["model_seconds"]
    latencies.sort()
    return {
        "throughput": audio_seconds / wall,
        "p50": statistics.median(latencies),
        "p95": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
        "batch": pieces / calls if calls else 0.0,
        "busy": model_seconds / wall,
        "per_piece": model_seconds / pieces if pieces else 0.0,
    }


def median_of(runs: list[dict]) -> dict:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests-per-client", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--whisper-workers", type=int, default=0, help="0: the server's default")
    parser.add_argument("--port", type=int, default=8125)
    args = parser.parse_args()

    from speakerscribe.audio import decode_audio_bytes

    data = testdata_dir()
    clips = []
    for name in CLIPS:
        raw = (data / name).read_bytes()
        clips.append((raw, decode_audio_bytes(raw).size / 16000))

    unbatched, batched = "batch size 1", f"batching ({args.batch_size})"
    apps = {
        "unbatched": {"max_batch_size": 1, "whisper_workers": args.whisper_workers},
        "batched": {"max_batch_size": args.batch_size, "whisper_workers": args.whisper_workers},
    }
    labels = {"unbatched": unbatched, "batched": batched}
    runs: dict[tuple[str, str, int], list[dict]] = {}
    with running_apps(args.port, apps) as bases:
        for mode in args.modes:
            for app in apps:
                drive(bases[app], clips[:2], 1, 1, MODES[mode], app)  # warm-up
        for repeat in range(args.repeats):
            order = list(apps) if repeat % 2 == 0 else list(reversed(apps))
            for mode in args.modes:
                for clients in args.clients:
                    for app in order:
                        r = drive(
                            bases[app], clips, clients, args.requests_per_client, MODES[mode], app
                        )
                        runs.setdefault((labels[app], mode, clients), []).append(r)
                        print(
                            f"  repeat {repeat + 1}: {labels[app]:<14} {mode:<14} "
                            f"{clients:>3} clients: "
                            f"{r['throughput']:.2f} audio-s/s",
                            flush=True,
                        )

    print()
    header = (
        f"{'mode':<14} {'clients':>7} | {'config':<14} {'audio-s/s':>9} {'p50 s':>7} {'p95 s':>7} "
        f"{'pieces/call':>11} {'busy':>5} {'s/piece':>7}"
    )
    print(header + f" | {'ratio':>6} {'per repeat':<20}")
    print("-" * (len(header) + 30))
    for mode in args.modes:
        for clients in args.clients:
            base_runs, batched_runs = (
                runs[(unbatched, mode, clients)],
                runs[(batched, mode, clients)],
            )
            base = median_of(base_runs)
            for label, label_runs in ((unbatched, base_runs), (batched, batched_runs)):
                r = median_of(label_runs)
                ratio = each = ""
                if label == batched:
                    ratio = f"{r['throughput'] / base['throughput']:.2f}x"
                    each = " ".join(
                        f"{b['throughput'] / u['throughput']:.2f}"
                        for u, b in zip(base_runs, label_runs, strict=True)
                    )
                print(
                    f"{mode:<14} {clients:>7} | {label:<14} {r['throughput']:>9.2f} "
                    f"{r['p50']:>7.2f} "
                    f"{r['p95']:>7.2f} {r['batch']:>11.2f} {r['busy']:>5.0%} "
                    f"{r['per_piece']:>7.2f} | {ratio:>6} {each}"
                )
            p50_ratio = median_of(batched_runs)["p50"] / base["p50"]
            print(f"{'':<14} {'':>7} | {'p50 batched/unbatched':<44} {p50_ratio:.2f}")
    clients = " ".join(str(c) for c in args.clients)
    modes = " ".join(f"'{m}'" for m in args.modes)
    print(
        f"\ncommand: python load/bench_batching.py --clients {clients} --requests-per-client "
        f"{args.requests_per_client} --batch-size {args.batch_size} --repeats {args.repeats} "
        f"--modes {modes} --whisper-workers {args.whisper_workers}"
    )


if __name__ == "__main__":
    main()
