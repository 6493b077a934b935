"""The local two-node cluster of tests/cluster and the helpers its tests share.

``LocalCluster`` starts a head and one worker with ``ray start`` (4 logical CPUs and 2
logical GPUs each, token auth), each under its own ``--temp-dir`` below ``CLUSTER_ROOT``
and on ports of their own, so a ``ray.init()`` elsewhere on this machine neither finds
nor disturbs it (the address file ``ray_current_cluster`` lives under the temp dir, not
/tmp/ray); it stops them by killing exactly their processes (never ``ray stop``, which
stops every Ray instance on the machine). ``cluster_config`` derives the test config
from serve_config.yaml in code.

Ray resolves "127.0.0.1" to the machine's outward address in ``ray start`` and
``ray.init``; ``KEEP_LOOPBACK`` switches that off, so every node, driver and request of
this suite stays on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import requests
import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
CLUSTER_ROOT = Path(os.environ.get("SPEAKERSCRIBE_CLUSTER_ROOT", "/tmp/ray-cluster-test"))
APP = "speakerscribe"
HOST = "127.0.0.1"
HTTP_PORT = int(os.environ.get("SPEAKERSCRIBE_CLUSTER_HTTP_PORT", "8210"))
BASE_URL = f"http://{HOST}:{HTTP_PORT}"
MARKER = "SPEAKERSCRIBE_CLUSTER_TEST"
"""Environment variable set on every process this suite starts (value: the node's name)."""

# Every port a node opens, none of them Ray's defaults (6379, 8265, 10001, 52365...).
NODE_PORTS: dict[str, dict[str, int]] = {
    "head": {
        "port": 6390,  # GCS
        "node-manager-port": 6391,
        "object-manager-port": 6392,
        "ray-client-server-port": 6393,
        "dashboard-port": 8290,
        "dashboard-agent-listen-port": 8291,
        "dashboard-agent-grpc-port": 8292,
        "runtime-env-agent-port": 8293,
        "metrics-export-port": 8294,
        "min-worker-port": 21000,
        "max-worker-port": 21999,
    },
    "worker": {
        "node-manager-port": 6394,
        "object-manager-port": 6395,
        "dashboard-agent-listen-port": 8301,
        "dashboard-agent-grpc-port": 8302,
        "runtime-env-agent-port": 8303,
        "metrics-export-port": 8304,
        "min-worker-port": 22000,
        "max-worker-port": 22999,
    },
}
GCS_ADDRESS = f"{HOST}:{NODE_PORTS['head']['port']}"
DASHBOARD_URL = f"http://{HOST}:{NODE_PORTS['head']['dashboard-port']}"
NODE_CPUS, NODE_GPUS = 4, 2
OBJECT_STORE_BYTES = 1_000_000_000

# The test config: serve_config.yaml with bundled models, short autoscaling delays, small
# replica maxima, and CPU requests halved so the head alone still holds every stage at its
# minimum (2 ingress x 1 + 3 stages x 0.5 + 2 job runners x 0.125 = 3.75 of 4 CPUs). GPU
# fractions stay as in production: they are what the fractional-GPU test checks.
MODEL_ARGS = (
    "whisper_model",
    "whisper_models",
    "diarization_pipeline",
    "separation_model",
    "separation_repo",
    "model_cache_dir",
    "hf_token",
)
MODEL_ENV = ("HF_HOME", "TORCH_HOME")  # production's model cache volume
AUTOSCALING_DELAYS = {
    "upscale_delay_s": 2.0,
    "downscale_delay_s": 5.0,
    "look_back_period_s": 5.0,
    "metrics_interval_s": 1.0,  # how often handles report their queues
}
REPLICA_RANGE = {  # (min, max) replicas; JobRunner takes no requests to scale on
    "SpeechIngress": (2, 2),
    "VocalSeparator": (1, 1),
    "Transcriber": (1, 3),
    "Diarizer": (1, 2),  # about 1.1 GB each
}
FIXED_REPLICAS = {"JobRunner": 2}
"""One JobRunner per node (``max_replicas_per_node: 1``), so the job node-loss test always
has a runner to lose on the worker, and the worker gets its runner back when it returns
(Serve never moves a running replica onto a node that comes back)."""
DATA_DIR = CLUSTER_ROOT / "data"
"""The job store (SQLite) both nodes share, as nodes on one machine can; emptied per run."""
JOB_ARGS = {"job_stale_after_s": 10.0, "jobs_per_runner": 1, "job_pieces_in_flight": 2}
CPU_SCALE = 0.5
STAGES = ("SpeechIngress", "VocalSeparator", "Transcriber", "Diarizer", "JobRunner")

KEEP_LOOPBACK = (
    "import os\n"
    "import ray._private.services as services\n"
    "_resolve = services.resolve_ip_for_localhost\n"
    "services.resolve_ip_for_localhost = "
    "lambda host: host if host == '127.0.0.1' else _resolve(host)\n"
    # the processes this one starts (dashboard, agents, workers) keep 127.0.0.1 as well
    "os.environ['RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER'] = '0'\n"
)
"""Ray turns 127.0.0.1 into the machine's outward address (in ``ray start``, ``ray.init``
and every process that connects without being told its node); this keeps it as given.
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` alone would do that, but ``ray start`` then
refuses to start a second node, so the CLI process itself gets the patched resolver."""


def keep_loopback() -> None:
    """In this process: 127.0.0.1 stays 127.0.0.1 (a driver of the cluster)."""
    import ray._private.ray_constants as constants

    exec(KEEP_LOOPBACK, {})
    constants.ENABLE_RAY_CLUSTER = False


def load_yaml(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


def cluster_config(port: int = HTTP_PORT) -> dict:
    """serve_config.yaml, changed only where this machine needs it (see the module doc)."""
    config = copy.deepcopy(load_yaml("serve_config.yaml"))
    (cpu_app,) = load_yaml("serve_config.cpu.yaml")["applications"]
    config["proxy_location"] = "HeadOnly"
    config["http_options"] = {**config["http_options"], "host": HOST, "port": port}
    (app,) = config["applications"]
    for key in MODEL_ARGS:  # the bundled models, named as serve_config.cpu.yaml names them
        app["args"].pop(key, None)
        if key in cpu_app["args"]:
            app["args"][key] = cpu_app["args"][key]
    app["args"].update(JOB_ARGS, data_dir=str(DATA_DIR))
    env = app.get("runtime_env", {}).get("env_vars", {})
    for key in MODEL_ENV:
        env.pop(key, None)
    for deployment in app["deployments"]:
        name = deployment["name"]
        options = deployment.setdefault("ray_actor_options", {})
        options["num_cpus"] = options.get("num_cpus", 1) * CPU_SCALE
        if name in FIXED_REPLICAS:
            deployment["num_replicas"] = FIXED_REPLICAS[name]
            deployment["max_replicas_per_node"] = 1
        if "autoscaling_config" in deployment:
            low, high = REPLICA_RANGE[name]
            deployment["autoscaling_config"].update(
                AUTOSCALING_DELAYS, min_replicas=low, max_replicas=high
            )
    return config


def deployment_config(config: dict, name: str) -> dict:
    (app,) = config["applications"]
    (found,) = [d for d in app["deployments"] if d["name"] == name]
    return found


# --- processes ------------------------------------------------------------------------


def _fixed_ports(node: str) -> set[int]:
    return {v for k, v in NODE_PORTS[node].items() if not k.endswith("worker-port")}


def cluster_processes(node: str | None = None) -> list:
    """This suite's Ray processes (of one node, or all), then every descendant of those.

    A process is ours if its command line names our temp dir, its environment carries
    ``MARKER``, or it listens on one of our fixed ports (Ray's agents rewrite their
    command line and environment into a process title, so only their ports tell)."""
    import psutil

    names = [node] if node else list(NODE_PORTS)
    roots = [f"{CLUSTER_ROOT / name}" for name in names]
    ports = set().union(*(_fixed_ports(name) for name in names))
    listeners: set[int] = set()
    with contextlib.suppress(psutil.Error):
        listeners = {
            c.pid
            for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port in ports and c.pid
        }
    me = os.getpid()
    found: dict[int, Any] = {}
    for process in psutil.process_iter(["pid", "cmdline"]):
        if process.pid == me:
            continue
        try:
            cmdline = " ".join(process.info["cmdline"] or [])
            mine = process.pid in listeners or any(root in cmdline for root in roots)
            if not mine:
                mine = process.environ().get(MARKER) in names
        except psutil.Error:
            continue
        if mine:
            found[process.pid] = process
    for process in list(found.values()):
        with contextlib.suppress(psutil.Error):
            for child in process.children(recursive=True):
                if child.pid != me:
                    found.setdefault(child.pid, child)
    return list(found.values())


def kill_processes(processes: list) -> None:
    import psutil

    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(processes, timeout=15)


class LocalCluster:
    """The head and worker nodes of this suite, started and stopped by their processes."""

    def __init__(self) -> None:
        self.env = dict(os.environ)
        self.known: dict[str, list] = {"head": [], "worker": []}  # processes seen per node
        self.log: list[str] = []

    # token auth: a second node only joins a cluster that has it on
    def prepare_auth(self) -> None:
        token = subprocess.run(
            [str(VENV_BIN / "ray"), "get-auth-token", "--generate"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        self.env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
        self.env.pop("RAY_ADDRESS", None)
        self.env["RAY_USAGE_STATS_ENABLED"] = "0"

    def _ray_start(self, node: str, *args: str) -> None:
        temp_dir = CLUSTER_ROOT / node
        temp_dir.mkdir(parents=True, exist_ok=True)
        ports = [f"--{key}={value}" for key, value in NODE_PORTS[node].items()]
        command = [
            sys.executable,
            "-c",
            KEEP_LOOPBACK + "import sys\nfrom ray.scripts.scripts import main\n"
            "sys.argv[0] = 'ray'\nmain()",
            "start",
            *args,
            f"--node-ip-address={HOST}",
            f"--num-cpus={NODE_CPUS}",
            f"--num-gpus={NODE_GPUS}",
            f"--resources={json.dumps({f'cluster_test_{node}': 100})}",
            f"--object-store-memory={OBJECT_STORE_BYTES}",
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
            *ports,
        ]
        started = time.monotonic()
        run_checked(command, {**self.env, MARKER: node}, 180, f"ray start ({node})")
        self.note(f"ray start {node}: {time.monotonic() - started:.1f} s")
        self.remember(node)

    def start_head(self) -> None:
        self._ray_start(
            "head",
            "--head",
            "--include-dashboard=true",
            f"--dashboard-host={HOST}",
        )

    def start_worker(self) -> None:
        self._ray_start("worker", f"--address={GCS_ADDRESS}")

    def remember(self, node: str) -> None:
        """Record the node's processes now, so none is missed once its parent is gone."""
        seen = {p.pid for p in self.known[node]}
        self.known[node] += [p for p in cluster_processes(node) if p.pid not in seen]

    def processes(self, node: str) -> list:

        self.remember(node)
        return [p for p in self.known[node] if p.is_running() and p.status() != "zombie"]

    def raylet(self, node: str):
        import psutil

        for process in self.processes(node):
            with contextlib.suppress(psutil.Error):
                if process.name() == "raylet":
                    return process
        raise LookupError(f"no raylet for the {node} node")

    def kill_node_processes(self, node: str) -> None:
        self.remember(node)
        kill_processes(self.known[node])
        self.known[node] = []

    def stop(self) -> None:
        for node in ("worker", "head"):
            self.remember(node)
        kill_processes(self.known["worker"] + self.known["head"] + cluster_processes())
        self.known = {"head": [], "worker": []}

    def note(self, line: str) -> None:
        self.log.append(line)
        print(f"[cluster] {line}", flush=True)

    # --- Serve ----------------------------------------------------------------------------
    def deploy(self, config: dict, name: str = "serve_config.cluster.yaml") -> None:
        """``serve deploy`` of ``config`` through the head's dashboard."""
        path = artifacts_root() / name
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        run_checked(
            [str(VENV_BIN / "serve"), "deploy", str(path), "--address", DASHBOARD_URL],
            self.env,
            120,
            "serve deploy",
        )


def run_checked(command: list[str], env: dict, timeout: float, what: str) -> None:
    """Run a CLI step of the cluster; its output goes into the error when it fails."""
    result = subprocess.run(
        command, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{result.stdout}\n{result.stderr}")


def artifacts_root() -> Path:
    path = REPO / "test-artifacts" / "cluster"
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- Serve status, replicas and placement -------------------------------------------------


def replica_counts(app: str = APP) -> dict[str, dict[str, int]]:
    """Per deployment: replicas by state (RUNNING, STARTING, ...) from ``serve.status()``."""
    from ray import serve

    status = serve.status()
    application = status.applications.get(app)
    if application is None:
        return {}
    return {
        name: {str(state): count for state, count in d.replica_states.items()}
        for name, d in application.deployments.items()
    }


def running(counts: dict[str, dict[str, int]], stage: str) -> int:
    return counts.get(stage, {}).get("RUNNING", 0)


def deployment_statuses(app: str = APP) -> dict[str, str]:
    """Per deployment: HEALTHY, UPDATING, UPSCALING, ... from ``serve.status()``."""
    from ray import serve

    application = serve.status().applications.get(app)
    if application is None:
        return {}
    return {
        name: getattr(d.status, "value", str(d.status))
        for name, d in application.deployments.items()
    }


def wait_for(condition: Callable[[], Any], timeout: float, what: str, every: float = 1.0) -> Any:
    """Poll ``condition`` until it returns something true (returned); errors count as no."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except Exception as error:  # a status call can fail while nodes come and go
            last = error
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def at_minimum() -> dict[str, dict[str, int]] | None:
    """The replica counts if every autoscaled stage is at its minimum, all RUNNING."""
    counts = replica_counts()
    for stage, (low, _) in REPLICA_RANGE.items():
        if counts.get(stage) != {"RUNNING": low}:
            return None
    return counts


def minimum_running(nodes_alive: int = 2) -> dict[str, dict[str, int]] | None:
    """The replica counts if every stage has at least its minimum RUNNING (others may be
    starting: under load a stage can want more replicas than there is room for). With
    one node down, the fixed stages hold one replica per node left."""
    counts = replica_counts()
    fixed = {stage: min(n, nodes_alive) for stage, n in FIXED_REPLICAS.items()}
    needed = {**{s: low for s, (low, _) in REPLICA_RANGE.items()}, **fixed}
    if all(running(counts, stage) >= low for stage, low in needed.items()):
        return counts
    return None


def wait_for_minimum(timeout: float = 240) -> dict[str, dict[str, int]]:
    return wait_for(at_minimum, timeout, "every stage at its minimum replica count")


def healthy(base: str = BASE_URL) -> bool:
    try:
        return requests.get(f"{base}/health", timeout=10).status_code == 200
    except requests.RequestException:
        return False


def alive_actors(class_prefix: str = "ServeReplica:") -> list[dict]:
    """Ray's state API: alive actors whose class name starts with ``class_prefix``."""
    from ray.util.state import list_actors

    actors = list_actors(
        address=DASHBOARD_URL, filters=[("state", "=", "ALIVE")], detail=True, limit=1000
    )
    return [dict(vars(a)) for a in actors if a.class_name.startswith(class_prefix)]


def replica_actors(app: str | None = APP, deployment: str | None = None) -> list[dict]:
    """Alive replica actors (class ``ServeReplica:<app>:<deployment>``); None: any."""

    def matches(actor: dict) -> bool:
        _, app_name, name = actor["class_name"].split(":", 2)
        return app in (None, app_name) and deployment in (None, name)

    return [actor for actor in alive_actors("ServeReplica:") if matches(actor)]


def nodes() -> dict[str, dict]:
    """Node id → {name (head/worker), alive, resources_total} from the state API."""
    from ray.util.state import list_nodes

    found = {}
    for node in list_nodes(address=DASHBOARD_URL, detail=True, limit=100):
        resources = node.resources_total or {}
        name = (
            "head"
            if "cluster_test_head" in resources
            else ("worker" if "cluster_test_worker" in resources else node.node_name)
        )
        found[node.node_id] = {
            "name": name,
            "state": node.state,
            "resources_total": resources,
        }
    return found


# --- audio --------------------------------------------------------------------------------


def wav_bytes(audio: np.ndarray, rate: int = 16000) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, audio, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def decode(path: Path) -> np.ndarray:
    from speakerscribe.audio import decode_audio_bytes

    return decode_audio_bytes(path.read_bytes())


# --- load and its record ------------------------------------------------------------------


class ReplicaTimeline:
    """Polls ``serve.status()`` in a thread: RUNNING (and total) replicas per stage."""

    def __init__(self, stages: tuple[str, ...] = ("Transcriber", "Diarizer"), every: float = 1.0):
        self.stages = stages
        self.every = every
        self.samples: list[dict] = []
        self.events: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.monotonic()

    def __enter__(self) -> ReplicaTimeline:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def mark(self, event: str) -> None:
        self.events.append((round(time.monotonic() - self.started, 1), event))

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                counts = replica_counts()
                self.samples.append(
                    {
                        "t": round(time.monotonic() - self.started, 1),
                        **{s: running(counts, s) for s in self.stages},
                        **{f"{s}_total": sum(counts.get(s, {}).values()) for s in self.stages},
                    }
                )
            self._stop.wait(self.every)

    def peak(self, stage: str) -> int:
        return max((s[stage] for s in self.samples), default=0)

    def changes(self) -> list[dict]:
        """The samples where some stage's RUNNING count changed (and the first and last)."""
        kept: list[dict] = []
        for sample in self.samples:
            if not kept or any(sample[s] != kept[-1][s] for s in self.stages):
                kept.append(sample)
        if self.samples and kept[-1] is not self.samples[-1]:
            kept.append(self.samples[-1])
        return kept

    def describe(self) -> str:
        lines = [
            f"  t={s['t']:>6.1f}s  " + "  ".join(f"{st} {s[st]}" for st in self.stages)
            for s in self.changes()
        ]
        lines += [f"  t={t:>6.1f}s  -- {event}" for t, event in self.events]
        return "\n".join(sorted(lines, key=lambda line: float(line.split("=")[1].split("s")[0])))


class ClosedLoopLoad:
    """``clients`` threads, each posting back to back until ``stop()``; each outcome is
    recorded with the request's start and end (monotonic seconds). The threads are
    daemons: a test that fails before ``stop()`` cannot keep the process alive."""

    def __init__(self, clients: int, post: Callable[[int], tuple[int, float, str]]):
        self.clients = clients
        self.post = post
        self.records: list[tuple[tuple[int, float, str], float, float]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def outcomes(self) -> list[tuple[int, float, str]]:
        return [outcome for outcome, _, _ in self.records]

    def _client(self, number: int) -> None:
        k = 0
        while not self._stop.is_set():
            started = time.monotonic()
            outcome = self.post(number * 1000 + k)
            self.records.append((outcome, started, time.monotonic()))  # one atomic append
            k += 1

    def start(self) -> ClosedLoopLoad:
        self._threads = [
            threading.Thread(target=self._client, args=(n,), daemon=True)
            for n in range(self.clients)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 900) -> list[tuple[int, float, str]]:
        """No new requests; wait for the ones in flight (each ends by its own timeout)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        return self.outcomes

    def in_flight_at(self, moment: float) -> list[tuple[int, float, str]]:
        return [outcome for outcome, start, end in self.records if start <= moment <= end]


def post_audio(
    client, data: bytes, response_format: str = "json", timeout: float = 300, **extra
) -> tuple[int, float, str]:
    """One upload through the official client: (status, seconds, note); -1 for a dropped
    connection and -2 for no answer within ``timeout`` (a hang)."""
    import openai

    started = time.perf_counter()
    try:
        client.with_options(timeout=timeout).audio.transcriptions.create(
            model="whisper-1",
            file=("audio.wav", data),
            response_format=response_format,
            extra_body=extra or None,
        )
    except openai.APITimeoutError as error:
        return -2, time.perf_counter() - started, repr(error)[:300]
    except openai.APIConnectionError as error:
        return -1, time.perf_counter() - started, repr(error)[:300]
    except openai.APIStatusError as error:
        return error.status_code, time.perf_counter() - started, str(error)[:300]
    return 200, time.perf_counter() - started, ""


def tally(outcomes: list[tuple[int, float, str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status, _, _ in outcomes:
        key = {-1: "dropped", -2: "timed out"}.get(status, str(status))
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def write_artifact(name: str, payload: Any) -> Path:
    path = artifacts_root() / name
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


REPORT: list[str] = []
"""Figures the tests found, printed once at the end of the run (no -s needed)."""


def report(line: str = "") -> None:
    REPORT.append(line)
    print(line, flush=True)
