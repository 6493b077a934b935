"""One GPU check, one table: batching, float16 throughput, diarization speed, the full
pipeline's real-time factor and GPU memory per replica at 0.5 and 0.25 GPU.

Run by ``load/gpu_check.sh`` (which installs first); on its own:

    python load/gpu_check.py [--cpu-smoke] [--port 8220] [--requests-per-client 2]

No weights can be downloaded, so Whisper is ``tools.random_whisper``'s large-v3
(random weights of the real shapes, decoding a fixed 126 tokens per 30 s window): time
matters here, not words. Diarization is the bundled pipeline (``make models``), on the GPU.

Steps, each timed:
1. build the random large-v3 (cached under the model cache; ``--cpu-smoke``: tiny-test);
2. float16 throughput: one in-process faster-whisper model, batches of 16 pieces of 30 s;
3. diarization speed: the bundled pipeline in-process on ``--diarize-minutes`` of speech;
4. one Ray instance of our own (``address="local"``) serving two applications built from
   serve_config.yaml's deployment options: ``unbatched`` (max_batch_size 1, Transcriber at
   0.25 GPU) and ``batched`` (max_batch_size 16, Transcriber at 0.5 GPU, Diarizer at
   0.25 GPU): together one GPU. ``load/bench_batching.py``'s closed loop drives both at 16
   clients (transcription only), then ``load/bench_pipeline.py``'s timed upload sends
   ``--long-minutes`` of conversation through the batched one as diarized_json;
5. GPU memory of each replica process (nvidia-smi), against its fraction of the GPU.

``--cpu-smoke`` runs the same steps on the CPU with the tiny-test model and short audio
(no GPU numbers: host memory instead), so the script is checked end to end anywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from _server import REPO, long_conversation, testdata_dir, wait_healthy, wav_bytes
from bench_batching import CLIPS, MODES, drive
from bench_pipeline import timed_post

STARTED = time.monotonic()
BATCH = 16
CLIENTS = 16


def log(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f} s] {message}", flush=True)


def gpu_info() -> dict[str, str] | None:
    if shutil.which("nvidia-smi") is None:
        return None
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0 or not out.stdout.strip():
        return None
    name, memory, driver = (part.strip() for part in out.stdout.splitlines()[0].split(","))
    return {"name": name, "memory": memory, "driver": driver}


def gpu_memory_by_pid() -> dict[int, float]:
    """MiB of GPU memory per process, as the driver sees it."""
    out = subprocess.run(
        [
            "nvidia-smi",
            "--query-compute-apps=pid,used_memory",
            "--format=csv,noheader,nounits",
        ],
        capture_output=True,
        text=True,
    )
    used = {}
    for line in out.stdout.splitlines():
        with contextlib.suppress(ValueError):
            pid, mib = (part.strip() for part in line.split(","))
            used[int(pid)] = float(mib)
    return used


def gpu_mib(field: str = "memory.total") -> float:
    out = subprocess.run(
        ["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
    )
    return float(out.stdout.split()[0])


# --- 1. the model -----------------------------------------------------------------------


def random_whisper(size: str) -> Path:
    from speakerscribe.bundled_models import DEFAULT_MODEL_CACHE
    from tools.random_whisper import build_random_whisper

    cache = Path(os.environ.get("SPEAKERSCRIBE_MODEL_CACHE_DIR", DEFAULT_MODEL_CACHE))
    return build_random_whisper(cache.expanduser() / "random-whisper" / size, size)


# --- 2. float16 throughput, in process ---------------------------------------------------


def pieces_of_speech(count: int, seconds: float = 30.0) -> list[np.ndarray]:
    audio = long_conversation(count * seconds / 60)
    size = int(seconds * 16000)
    return [audio[i * size : (i + 1) * size] for i in range(count)]


def whisper_throughput(model_dir: Path, device: str, repeats: int) -> tuple[str, float]:
    """(compute type, audio-s per wall-s) of one model decoding batches of 16 × 30 s."""
    from speakerscribe.whisper.decoding import BatchTranscriber
    from speakerscribe.whisper.loading import load_whisper_model, resolve_compute_type
    from speakerscribe.whisper.options import DecodeOptions

    compute = resolve_compute_type("auto", device)  # float16 on GPU
    model = BatchTranscriber(
        load_whisper_model(str(model_dir), device=device, compute_type=compute)
    )
    pieces = pieces_of_speech(BATCH)
    options = DecodeOptions(language="en", word_timestamps=False, beam_size=5)
    model.transcribe(pieces[:2], options)  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        model.transcribe(pieces, options)
    wall = time.perf_counter() - started
    del model  # frees its GPU memory before the server starts
    return compute, repeats * BATCH * 30.0 / wall


# --- 3. diarization speed, in process ----------------------------------------------------


def diarization_seconds_per_hour(device: str, minutes: float) -> float:
    from speakerscribe.diarization.diarizer import load_diarizer

    diarizer = load_diarizer("bundled", device=device)
    diarizer(long_conversation(0.5))  # warm-up
    audio = long_conversation(minutes)
    started = time.perf_counter()
    diarizer(audio)
    wall = time.perf_counter() - started
    del diarizer
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()
    return wall / (audio.size / 16000 / 3600)


# --- 4. the server ------------------------------------------------------------------------


def production_options(gpu: bool) -> dict[str, dict]:
    """Per deployment: serve_config.yaml's replica options, one replica each (no
    autoscaling in a benchmark); without a GPU, no GPU fractions."""
    config = yaml.safe_load((REPO / "serve_config.yaml").read_text())
    (app,) = config["applications"]
    options = {}
    for deployment in app["deployments"]:
        actor = dict(deployment.get("ray_actor_options", {}))
        if not gpu:
            actor.pop("num_gpus", None)
        options[deployment["name"]] = {
            "num_replicas": 1,
            "ray_actor_options": actor,
            "max_ongoing_requests": deployment["max_ongoing_requests"],
            "max_queued_requests": deployment.get("max_queued_requests", -1),
        }
    return options


def application(settings, options: dict[str, dict]):
    """pipeline_graph.build's graph, each deployment with ``options`` (Serve's .options)."""
    from deployments.diarizer import Diarizer
    from deployments.ingress import SpeechIngress
    from deployments.jobs import JobRunner
    from deployments.separator import VocalSeparator
    from deployments.stages import StageHandles
    from deployments.transcriber import Transcriber

    batching = {
        "max_batch_size": settings.max_batch_size,
        "batch_wait_timeout_s": settings.batch_wait_timeout_s,
    }
    handles = StageHandles(
        separator=VocalSeparator.options(**options["VocalSeparator"]).bind(settings.separator),
        transcriber=Transcriber.options(user_config=batching, **options["Transcriber"]).bind(
            settings.transcriber
        ),
        diarizer=Diarizer.options(**options["Diarizer"]).bind(settings.diarizer),
    )
    job_runner = JobRunner.options(**options["JobRunner"]).bind(settings, handles)
    return SpeechIngress.options(**options["SpeechIngress"]).bind(settings, handles, job_runner)


def app_options(gpu: bool, transcriber_gpu: float, diarizer_gpu: float) -> dict[str, dict]:
    options = production_options(gpu)
    if gpu:
        options["Transcriber"]["ray_actor_options"]["num_gpus"] = transcriber_gpu
        options["Diarizer"]["ray_actor_options"]["num_gpus"] = diarizer_gpu
        options["VocalSeparator"]["ray_actor_options"].pop("num_gpus", None)  # not asked for
    for actor in (o["ray_actor_options"] for o in options.values()):
        actor["num_cpus"] = min(actor.get("num_cpus", 1), 1)
    options["SpeechIngress"]["ray_actor_options"]["num_cpus"] = 1
    return options


@contextlib.contextmanager
def serving(port: int, apps: dict[str, tuple[dict, dict]], gpu: bool):
    """A Ray instance of our own with ``apps`` (name → (settings, options)) on ``port``."""
    import ray
    from ray import serve

    from speakerscribe.settings import load_settings

    os.environ.setdefault("RAY_enable_task_events", "0")  # as the shipped configs
    ray.init(
        address="local",  # never someone else's cluster
        num_cpus=max(os.cpu_count() or 2, 16),
        num_gpus=1 if gpu else 0,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        bases = {}
        for name, (settings, options) in apps.items():
            app = application(load_settings(**settings), options)
            serve.run(app, name=name, route_prefix=f"/{name}")
            bases[name] = f"http://127.0.0.1:{port}/{name}"
        wait_healthy(bases.values(), timeout_s=600)
        yield bases
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()
        ray.shutdown()


def replica_processes() -> dict[str, tuple[int, float]]:
    """'app/deployment' → (pid, host RSS MiB) of each replica."""
    import ray

    from deployments.introspection import replica_actors

    def whoami(_replica) -> tuple[int, float]:
        import os as _os

        rss = 0.0
        with open(f"/proc/{_os.getpid()}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024
        return _os.getpid(), rss

    found = {}
    for app, deployment, handle in replica_actors():
        found[f"{app}/{deployment}"] = ray.get(handle.__ray_call__.remote(whoami), timeout=60)
    return found


# --- the table -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny model, short audio, CPU")
    parser.add_argument("--port", type=int, default=8220)
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--long-minutes", type=float, default=None)
    parser.add_argument("--diarize-minutes", type=float, default=None)
    args = parser.parse_args()
    smoke = args.cpu_smoke
    size = "tiny-test" if smoke else "large-v3"
    long_minutes = args.long_minutes or (1.0 if smoke else 10.0)
    diarize_minutes = args.diarize_minutes or (1.0 if smoke else 10.0)
    gpu = gpu_info()
    if not smoke and gpu is None:
        sys.exit("no GPU found (nvidia-smi); run with --cpu-smoke to check the script on a CPU")
    device = "cpu" if smoke else "cuda"
    log(f"device: {gpu['name'] + ', ' + gpu['memory'] if gpu and not smoke else 'CPU smoke run'}")
    rows: list[tuple[str, str]] = []
    timings: list[tuple[str, float]] = []

    def step(name: str):
        timings.append((name, time.monotonic()))
        log(name)

    step(f"1. random Whisper {size}")
    model_dir = random_whisper(size)

    step("2. float16 throughput (in process)")
    compute, throughput = whisper_throughput(model_dir, device, repeats=1 if smoke else 3)
    rows.append(
        (
            f"Whisper {size} {compute}, batches of {BATCH} x 30 s (in process)",
            f"{throughput:.1f} audio-s/s",
        )
    )

    step("3. diarization speed (in process)")
    per_hour = diarization_seconds_per_hour(device, diarize_minutes)
    rows.append(
        (
            f"diarization, bundled pipeline on {device}, {diarize_minutes:g} min of speech",
            f"{per_hour:.0f} s per hour of audio ({3600 / per_hour:.0f}x realtime)",
        )
    )

    step("4. the server: unbatched + batched applications")
    common = {
        "whisper_model": str(model_dir),
        "diarization_pipeline": "bundled",
        "separation_model": "soft-mask",
        "enable_speaker_diarization": True,
    }
    apps = {
        "unbatched": ({**common, "max_batch_size": 1}, app_options(not smoke, 0.25, 0.0)),
        "batched": (
            {**common, "max_batch_size": BATCH, "batch_wait_timeout_s": 0.02},
            app_options(not smoke, 0.5, 0.25),
        ),
    }
    from speakerscribe.audio import decode_audio_bytes

    clips = []
    for name in CLIPS:
        raw = (testdata_dir() / name).read_bytes()
        clips.append((raw, decode_audio_bytes(raw).size / 16000))
    with serving(args.port, apps, gpu=not smoke) as bases:
        for app in apps:
            drive(bases[app], clips[:2], 1, 1, MODES["transcription"], app)  # warm-up
        results = {
            app: drive(
                bases[app], clips, CLIENTS, args.requests_per_client, MODES["transcription"], app
            )
            for app in apps
        }
        unbatched, batched = results["unbatched"], results["batched"]
        rows.append(
            (
                f"{CLIENTS} clients, transcription only: batch size 1",
                f"{unbatched['throughput']:.1f} audio-s/s, p50 {unbatched['p50']:.2f} s, "
                f"{unbatched['batch']:.1f} pieces/call",
            )
        )
        rows.append(
            (
                f"{CLIENTS} clients, transcription only: batching ({BATCH})",
                f"{batched['throughput']:.1f} audio-s/s, p50 {batched['p50']:.2f} s, "
                f"{batched['batch']:.1f} pieces/call = "
                f"{batched['throughput'] / unbatched['throughput']:.2f}x batch size 1",
            )
        )

        step(f"4b. full pipeline, {long_minutes:g} min conversation, diarized_json")
        long_bytes = wav_bytes(long_conversation(long_minutes))
        timed_post(bases["batched"], long_bytes, response_format="diarized_json")  # warm-up
        wall = timed_post(bases["batched"], long_bytes, response_format="diarized_json")
        rows.append(
            (
                f"full pipeline, {long_minutes:g} min, diarized_json (server)",
                f"RTF {wall / (long_minutes * 60):.4f} ({long_minutes * 60 / wall:.0f}x realtime, "
                f"{wall:.1f} s)",
            )
        )

        step("5. memory per replica")
        processes = replica_processes()
        by_pid = gpu_memory_by_pid() if not smoke else {}
        total = gpu_mib("memory.total") if not smoke else 0.0
        used = gpu_mib("memory.used") if not smoke else 0.0
        for label, app, deployment, fraction in (
            ("Transcriber at 0.5 GPU", "batched", "Transcriber", 0.5),
            ("Transcriber at 0.25 GPU", "unbatched", "Transcriber", 0.25),
            ("Diarizer at 0.25 GPU", "batched", "Diarizer", 0.25),
        ):
            pid, rss = processes[f"{app}/{deployment}"]
            if smoke:
                value = f"n/a on CPU (host RSS {rss:.0f} MiB)"
            elif pid in by_pid:
                share = fraction * total
                value = (
                    f"{by_pid[pid]:.0f} MiB of its {share:.0f} MiB share "
                    f"({by_pid[pid] / share:.0%})"
                )
            else:  # a container can hide processes from the driver's list
                value = f"pid {pid} not in nvidia-smi's list; GPU in use {used:.0f} MiB in all"
            rows.append((f"GPU memory per replica: {label}", value))
    timings.append(("end", time.monotonic()))

    print()
    title = f"speakerscribe GPU check: {gpu['name'] if gpu and not smoke else 'CPU smoke run'}"
    width = max(len(name) for name, _ in rows)
    print(title)
    print("-" * (width + 2 + max(len(value) for _, value in rows)))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    steps = ", ".join(
        f"{name.split(' ', 1)[0]} {end - start:.0f} s"
        for (name, start), (_, end) in zip(timings, timings[1:], strict=False)
    )
    print(f"\nsteps: {steps}; total {time.monotonic() - STARTED:.0f} s")
    flags = " --cpu-smoke" if smoke else ""
    print(
        f"command: load/gpu_check.sh{flags} (python load/gpu_check.py{flags} --port {args.port} "
        f"--requests-per-client {args.requests_per_client} --long-minutes {long_minutes:g} "
        f"--diarize-minutes {diarize_minutes:g})"
    )


if __name__ == "__main__":
    main()
