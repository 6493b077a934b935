"""tests/restart: the whole application and Ray stopped and started again, as a user does.

`make test-restart` runs this suite (not `make test`). ``MakeServe`` starts `make serve`
with a config derived from serve_config.cpu.yaml (loopback, a port of its own, short
job timings), stops it with `serve shutdown` and `ray stop`, and starts it again on the
same data directory. `ray stop` stops every Ray instance on the machine, so nothing else
may run Ray meanwhile.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
PORT = int(os.environ.get("SPEAKERSCRIBE_RESTART_TEST_PORT", "8231"))
BASE_URL = f"http://127.0.0.1:{PORT}"
DASHBOARD = "http://127.0.0.1:8265"  # where `serve run`'s own Ray puts its dashboard
START_LIMIT_S = 480.0

TEST_ARGS = {
    "job_stale_after_s": 10.0,  # a job whose runner vanished is queued again quickly
    "job_pieces_in_flight": 2,  # pieces finish a few at a time: a stop lands mid-job
    "jobs_per_runner": 1,
}


def write_config(folder: Path, **args) -> Path:
    """serve_config.cpu.yaml on 127.0.0.1:PORT with TEST_ARGS and ``args`` added."""
    config = yaml.safe_load((REPO / "serve_config.cpu.yaml").read_text())
    config["http_options"].update(host="127.0.0.1", port=PORT)
    (app,) = config["applications"]
    app["args"].update(TEST_ARGS, **args)
    path = folder / "serve_config.restart.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class MakeServe:
    """`make serve SERVE_CONFIG=… DATA_DIR=…` in its own process group, with a log."""

    def __init__(self, config: Path, data_dir: Path, log: Path):
        self.config, self.data_dir, self.log = config, data_dir, log
        self.process: subprocess.Popen | None = None
        self.starts: list[float] = []

    def start(self) -> float:
        started = time.monotonic()
        with self.log.open("a") as log:
            log.write(f"\n===== make serve (start {len(self.starts) + 1}) =====\n")
            log.flush()
            self.process = subprocess.Popen(
                ["make", "serve", f"SERVE_CONFIG={self.config}", f"DATA_DIR={self.data_dir}"],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        while time.monotonic() - started < START_LIMIT_S:
            if self.process.poll() is not None:
                pytest.fail(f"`make serve` exited ({self.process.returncode}); see {self.log}")
            try:
                if requests.get(f"{BASE_URL}/health", timeout=5).status_code == 200:
                    self.starts.append(time.monotonic() - started)
                    return self.starts[-1]
            except requests.RequestException:
                pass
            time.sleep(2)
        pytest.fail(f"not healthy {START_LIMIT_S:.0f} s after `make serve`; see {self.log}")

    def crash(self) -> None:
        """Everything gone at once, as on a power cut: `make serve` and every Ray process
        killed, no graceful shutdown, so a running job cannot finish on the way down."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        self._ray_stop()

    def stop(self) -> None:
        """`serve shutdown`, then `make serve` interrupted, then `ray stop`."""
        subprocess.run(
            [str(VENV_BIN / "serve"), "shutdown", "-y", "-a", DASHBOARD],
            capture_output=True,
            timeout=120,
            check=False,
        )
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(30)
        self._ray_stop()

    def _ray_stop(self) -> None:
        ray_stop = [str(VENV_BIN / "ray"), "stop", "--force"]
        subprocess.run(ray_stop, capture_output=True, timeout=120, check=False)
        self.process = None
