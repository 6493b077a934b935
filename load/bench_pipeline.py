"""Speed of one request through the server, against faster-whisper called in-process.

Prints, for sample.wav (30 s): wall time of transcription + diarization through the
server and its real-time factor; transcription alone through the server against a
direct in-process faster-whisper call with the same settings (the serving overhead,
as a ratio); and for long files (default 10 and 60 minutes of the shared clips) the
wall time of the full pipeline, its ratio to the 30 s file against the linear ratio
(minutes x 2), each stage's own ratio from the Server-Timing header (which stage
grows faster than the audio), and every replica's peak memory.

    python load/bench_pipeline.py [--repeat 3] [--long-minutes 10 60]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import requests
from _server import (
    REPO,
    long_conversation,
    print_table,
    replica_memory_mb,
    running_app,
    testdata_dir,
    wav_bytes,
)


def timed_post(base: str, data: bytes, **fields) -> tuple[float, dict[str, float]]:
    """Wall seconds of one request, and its stages' seconds from ``Server-Timing``."""
    started = time.perf_counter()
    response = requests.post(
        f"{base}/v1/audio/transcriptions",
        files={"file": ("audio.wav", data)},
        data=fields,
        timeout=3600,
    )
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed, stage_seconds(response.headers)


def stage_seconds(headers) -> dict[str, float]:
    """``Server-Timing: decode;dur=12.3, ...`` → {"decode": 0.0123, ...}."""
    stages = {}
    for part in headers.get("Server-Timing", "").split(","):
        name, _, duration = part.strip().partition(";dur=")
        if duration:
            stages[name] = float(duration) / 1000
    return stages


def median_of(repeat: int, fn) -> float:
    fn()  # warm-up: first calls pay lazy initialisation
    return statistics.median(fn() for _ in range(repeat))


def median_post(repeat: int, post) -> tuple[float, dict[str, float]]:
    """``median_of`` for ``timed_post``: the median wall time and each stage's median."""
    post()  # warm-up
    runs = [post() for _ in range(repeat)]
    names = {name for _, stages in runs for name in stages}
    return statistics.median(wall for wall, _ in runs), {
        name: statistics.median(stages.get(name, 0.0) for _, stages in runs) for name in names
    }


def in_process_seconds(audio, beam_size: int, repeat: int) -> float:
    from speakerscribe.whisper.loading import load_whisper_model

    model = load_whisper_model("bundled")

    def once() -> float:
        started = time.perf_counter()
        segments, _ = model.transcribe(
            audio, language="en", beam_size=beam_size, condition_on_previous_text=False
        )
        list(segments)
        return time.perf_counter() - started

    return median_of(repeat, once)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--long-minutes", type=float, nargs="*", default=[10.0, 60.0])
    parser.add_argument("--port", type=int, default=8124)
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from speakerscribe.audio import decode_audio_bytes
    from speakerscribe.settings import load_settings

    settings = load_settings()
    sample_bytes = (testdata_dir() / "pyannote/sample.wav").read_bytes()
    sample = decode_audio_bytes(sample_bytes)

    rows: list[tuple[str, str]] = []
    with running_app(args.port) as base:
        full, short = median_post(
            args.repeat, lambda: timed_post(base, sample_bytes, response_format="diarized_json")
        )
        alone, _ = median_post(
            args.repeat,
            lambda: timed_post(base, sample_bytes, enable_speaker_diarization="false"),
        )
        rows += [
            (
                "sample.wav 30 s, transcription + diarization (server)",
                f"{full:.2f} s = {30 / full:.1f}x realtime",
            ),
            ("sample.wav 30 s, transcription only (server)", f"{alone:.2f} s"),
        ]
        for long_minutes in args.long_minutes:
            long_audio = long_conversation(long_minutes)
            long_bytes = wav_bytes(long_audio)
            before = replica_memory_mb()
            long_wall, long = timed_post(base, long_bytes, response_format="diarized_json")
            after = replica_memory_mb()
            minutes = long_audio.size / 16000 / 60
            rows += [
                (
                    f"{minutes:.0f} min file, full pipeline (server)",
                    f"{long_wall:.1f} s = {minutes * 60 / long_wall:.1f}x realtime",
                ),
                (
                    f"{minutes:.0f} min / 30 s wall-time ratio (linear: {minutes * 2:.0f})",
                    f"{long_wall / full:.1f}",
                ),
            ]
            for stage in sorted(long, key=long.get, reverse=True):
                if short.get(stage):
                    rows.append(
                        (
                            f"  stage {stage}: 30 s → {minutes:.0f} min",
                            f"{short[stage]:.2f} s → {long[stage]:.1f} s "
                            f"= {long[stage] / short[stage]:.1f}x",
                        )
                    )
            decoded_mb = long_audio.nbytes / 2**20
            rows.append((f"{minutes:.0f} min decoded audio, one copy", f"{decoded_mb:.0f} MB"))
            for name, mem in sorted(after.items()):
                start_rss = before.get(name, {}).get("rss_mb", 0.0)
                rows.append(
                    (
                        f"  replica {name} memory",
                        f"start {start_rss:.0f} MB, peak {mem['peak_mb']:.0f} MB "
                        f"(+{(mem['peak_mb'] - start_rss) / decoded_mb:.1f} copies)",
                    )
                )
            del long_audio, long_bytes
    direct = in_process_seconds(sample, settings.beam_size, args.repeat)
    rows += [
        ("sample.wav transcription, in-process faster-whisper", f"{direct:.2f} s"),
        ("server / in-process, transcription only (target <= 1.10)", f"{alone / direct:.2f}"),
    ]
    print()
    print_table(rows)
    print(
        f"\ncommand: python load/bench_pipeline.py --repeat {args.repeat} --long-minutes "
        + " ".join(f"{m:g}" for m in args.long_minutes)
    )


if __name__ == "__main__":
    main()
