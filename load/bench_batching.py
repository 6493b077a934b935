"""Cross-request batching: the same concurrent load with batch size 1 and with batching on.

Starts the application itself, twice (max_batch_size=1, then batching on), drives each with
1, 4 and 16 closed-loop clients uploading real clips (transcription only, then the full
pipeline with diarization), and prints one table: throughput in audio-seconds per
wall-second, p50/p95 latency, mean pieces per Whisper model call, and the
batched/unbatched throughput ratio.

    python load/bench_batching.py [--clients 1 4 16] [--requests-per-client 3] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from _server import running_app, testdata_dir

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


def transcriber_stats() -> dict:
    from ray import serve

    return serve.get_deployment_handle("Transcriber", app_name="bench").stats.remote().result()


def drive(base: str, clips: list[tuple[bytes, float]], clients: int, per_client: int, fields: dict) -> dict:
    """Closed loop: each client sends ``per_client`` requests back to back, clips in rotation."""
    latencies: list[float] = []
    audio_seconds = 0.0

    def client(number: int) -> None:
        nonlocal audio_seconds
        for k in range(per_client):
            data, seconds = clips[(number * per_client + k) % len(clips)]
            started = time.perf_counter()
            response = requests.post(
                f"{base}/v1/audio/transcriptions", files={"file": ("clip", data)}, data=fields, timeout=1800
            )
            response.raise_for_status()
            latencies.append(time.perf_counter() - started)
            audio_seconds += seconds

    before = transcriber_stats()
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    wall = time.perf_counter() - started
    after = transcriber_stats()
    calls = after["model_calls"] - before["model_calls"]
    pieces = after["pieces_served"] - before["pieces_served"]
    latencies.sort()
    return {
        "throughput": audio_seconds / wall,
        "p50": statistics.median(latencies),
        "p95": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
        "batch": pieces / calls if calls else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests-per-client", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--port", type=int, default=8125)
    args = parser.parse_args()

    from speakerscribe.audio import decode_audio_bytes

    data = testdata_dir()
    clips = []
    for name in CLIPS:
        raw = (data / name).read_bytes()
        clips.append((raw, decode_audio_bytes(raw).size / 16000))

    results: dict[tuple[str, str, int], dict] = {}
    configs = {"batch size 1": 1, f"batching ({args.batch_size})": args.batch_size}
    for label, batch_size in configs.items():
        with running_app(args.port, max_batch_size=batch_size) as base:
            for mode, fields in MODES.items():
                drive(base, clips[:2], 1, 1, fields)  # warm-up
                for clients in args.clients:
                    per_client = max(args.requests_per_client, 2 if clients > 4 else args.requests_per_client)
                    results[(label, mode, clients)] = drive(base, clips, clients, per_client, fields)
                    r = results[(label, mode, clients)]
                    print(f"  {label:<14} {mode:<14} {clients:>3} clients: {r['throughput']:.2f} audio-s/s", flush=True)

    unbatched, batched = configs
    print()
    header = f"{'mode':<14} {'clients':>7} | {'config':<14} {'audio-s/s':>9} {'p50 s':>7} {'p95 s':>7} {'pieces/call':>11}"
    print(header + f" | {'ratio':>6}")
    print("-" * (len(header) + 9))
    for mode in MODES:
        for clients in args.clients:
            base = results[(unbatched, mode, clients)]
            for label in configs:
                r = results[(label, mode, clients)]
                ratio = f"{r['throughput'] / base['throughput']:.2f}x" if label == batched else ""
                print(
                    f"{mode:<14} {clients:>7} | {label:<14} {r['throughput']:>9.2f} {r['p50']:>7.2f} "
                    f"{r['p95']:>7.2f} {r['batch']:>11.2f} | {ratio:>6}"
                )
            p50_ratio = results[(batched, mode, clients)]["p50"] / base["p50"]
            print(f"{'':<14} {'':>7} | {'p50 batched/unbatched':<44} {p50_ratio:.2f}")
    clients = " ".join(str(c) for c in args.clients)
    print(
        f"\ncommand: python load/bench_batching.py --clients {clients} "
        f"--requests-per-client {args.requests_per_client} --batch-size {args.batch_size}"
    )


if __name__ == "__main__":
    main()
