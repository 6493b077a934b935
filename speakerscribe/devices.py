"""'auto' device and thread settings resolved per library: CTranslate2 for Whisper, torch
for the rest."""

from __future__ import annotations

import os


def machine_cores() -> int:
    if hasattr(os, "sched_getaffinity"):  # Linux: the cores this process may run on
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # macOS, Windows


MAX_CPU_THREADS = 4
"""Threads one model call gets when the settings leave it to us: faster-whisper's own cap."""


def resolve_cpu_threads(cpu_threads: int) -> int:
    """0 → this machine's cores, at most ``MAX_CPU_THREADS``.

    Inside a Ray actor OMP_NUM_THREADS is ceil(num_cpus), 1 for a fractional replica, and
    CTranslate2 and torch follow it when not told otherwise: a replica would use one core
    of many.
    """
    if cpu_threads > 0:
        return cpu_threads
    return max(1, min(MAX_CPU_THREADS, machine_cores()))


def use_torch_cpu_threads(device: str, cpu_threads: int) -> None:
    """A torch model stage on CPU computes on ``resolve_cpu_threads(cpu_threads)`` threads.

    On a GPU the CPU side is feature extraction and glue; Ray's setting stays.
    """
    if device != "cpu":
        return
    import torch

    torch.set_num_threads(resolve_cpu_threads(cpu_threads))


def whisper_device(device: str) -> str:
    if device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def torch_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
