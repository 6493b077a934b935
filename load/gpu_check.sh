#!/usr/bin/env bash
# The GPU check in one command, on a bare GPU machine with only this repository and its lock:
# `make install` (uv sync --locked, the native preflight, `make models`), then
# load/gpu_check.py, which prints one table: batch size 1 against batching at 16 clients
# (random large-v3), float16 throughput, diarization speed, the full pipeline's real-time
# factor and GPU memory per replica at 0.5 and 0.25 GPU. About 8 minutes on one GPU.
#
#   load/gpu_check.sh [--cpu-smoke] [--skip-install] [gpu_check.py options...]
#
# --cpu-smoke: the same steps on the CPU with a tiny model and short audio (checks the script
# anywhere). --skip-install: use .venv as it is (no uv sync, no model fetch).
set -euo pipefail
cd "$(dirname "$0")/.."

install=1
args=()
for arg in "$@"; do
    case "$arg" in
        --skip-install) install=0 ;;
        *) args+=("$arg") ;;
    esac
done

started=$(date +%s)
if [ "$install" = 1 ]; then
    make install
fi
installed=$(date +%s)
PYTHONUNBUFFERED=1 .venv/bin/python load/gpu_check.py "${args[@]}"
echo "gpu_check.sh: install $((installed - started)) s, check $(($(date +%s) - installed)) s," \
    "total $(($(date +%s) - started)) s"
