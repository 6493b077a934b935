"""serve_config*.yaml and the cluster manifests: valid for Ray, kept equal, and buildable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from speakerscribe.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
CONFIGS = ["serve_config.yaml", "serve_config.cpu.yaml"]
STAGES = {"SpeechIngress", "VocalSeparator", "Transcriber", "Diarizer", "JobRunner"}
# What we set per deployment on top of `serve build`'s output.
OVERRIDES = {
    "autoscaling_config",
    "ray_actor_options",
    "user_config",
    "max_ongoing_requests",
    "max_queued_requests",
    "num_replicas",
}


def load(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


def deployments(config: dict) -> dict[str, dict]:
    (app,) = config["applications"]
    return {d["name"]: d for d in app["deployments"]}


@pytest.mark.parametrize("name", CONFIGS)
def test_config_is_valid_for_ray_and_its_args_are_valid_settings(name):
    config = load(name)
    ServeDeploySchema.model_validate(config)
    (app,) = config["applications"]
    assert app["import_path"] == "pipeline_graph:build"
    settings = load_settings(**app["args"])
    assert set(deployments(config)) == STAGES
    batching = deployments(config)["Transcriber"]["user_config"]
    assert batching["max_batch_size"] == settings.max_batch_size


def test_production_config_autoscales_every_stage_on_fractional_gpus():
    stages = deployments(load("serve_config.yaml"))
    for name, deployment in stages.items():
        if name == "JobRunner":  # takes no requests to scale on: jobs come from its table
            assert deployment["num_replicas"] >= 2
            continue
        scaling = deployment["autoscaling_config"]
        assert 1 <= scaling["min_replicas"] <= scaling["max_replicas"], name
        assert scaling["target_ongoing_requests"] <= deployment["max_ongoing_requests"], name
        assert "max_queued_requests" in deployment, name
    gpus = {name: d["ray_actor_options"].get("num_gpus", 0) for name, d in stages.items()}
    assert gpus == {
        "SpeechIngress": 0,
        "VocalSeparator": 0.5,
        "Transcriber": 0.5,
        "Diarizer": 0.25,
        "JobRunner": 0,
    }
    # batches can fill: a replica takes at least two batches' worth of pieces
    transcriber = stages["Transcriber"]
    assert transcriber["max_ongoing_requests"] >= 2 * transcriber["user_config"]["max_batch_size"]


def test_configs_are_what_serve_build_writes_plus_our_overrides(tmp_path):
    built_path = tmp_path / "built.yaml"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "ray.serve.scripts",
            "build",
            "pipeline_graph:app",
            "-o",
            str(built_path),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=300,
    )
    built = yaml.safe_load(built_path.read_text())
    built_stages = deployments(built)
    for name in CONFIGS:
        ours = load(name)
        assert set(ours) >= set(built) - {"grpc_options"}, name
        (built_app,), (our_app,) = built["applications"], ours["applications"]
        assert our_app["route_prefix"] == built_app["route_prefix"]
        assert set(deployments(ours)) == set(built_stages)
        for stage, built_deployment in built_stages.items():
            ours_deployment = deployments(ours)[stage]
            for key, value in built_deployment.items():
                if key not in OVERRIDES:
                    assert ours_deployment.get(key, value) == value, (name, stage, key)


def rayservice() -> list[dict]:
    return list(yaml.safe_load_all((REPO / "cluster/rayservice.yaml").read_text()))


def test_rayservice_serves_serve_config_yaml_verbatim():
    service = rayservice()[0]
    assert service["kind"] == "RayService"
    assert yaml.safe_load(service["spec"]["serveConfigV2"]) == load("serve_config.yaml")
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    gpu_limits = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert gpu_limits["nvidia.com/gpu"] == "1" and groups["gpu"]["maxReplicas"] >= 1


def test_kubernetes_ingress_caps_bodies_at_the_upload_limit():
    service, ingress = rayservice()
    env = service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0][
        "env"
    ]
    limit_mb = next(e["value"] for e in env if e["name"] == "SPEAKERSCRIBE_MAX_UPLOAD_MB")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == f"{limit_mb}m"
    timeout = load("serve_config.yaml")["http_options"]["request_timeout_s"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= timeout


def test_cluster_launcher_has_a_cpu_head_and_gpu_workers():
    launcher = load("cluster/ray-cluster.yaml")
    types = launcher["available_node_types"]
    assert types[launcher["head_node_type"]]["resources"] == {"CPU": 0}
    gpu_types = [name for name, t in types.items() if t["resources"].get("GPU", 0) >= 1]
    assert gpu_types == ["gpu_worker"]
    assert types["gpu_worker"]["max_workers"] >= types["gpu_worker"]["min_workers"]


def test_bad_serve_config_args_fail_fast_naming_the_field():
    """`serve deploy` of a config with a bad arg fails in the builder, before any replica."""
    from pipeline_graph import build
    from speakerscribe.settings import SettingsError

    (app,) = load("serve_config.cpu.yaml")["applications"]
    with pytest.raises(SettingsError, match="max_batch_size"):
        build({**app["args"], "max_batch_size": 0})
    with pytest.raises(SettingsError, match="whisper_modles"):
        build({**app["args"], "whisper_modles": {}})


@pytest.mark.parametrize("name", CONFIGS)
def test_stage_deadlines_end_a_request_before_serves_timeout(name):
    """Long uploads and streams are cut by nothing blunter than their own stage deadlines.

    A request runs language detection, then separation, then transcription alongside
    diarization; each stage's deadline grows with the audio. For the longest audio the
    settings accept, their sum stays under Serve's end-to-end ``request_timeout_s``.
    """
    config = load(name)
    (app,) = config["applications"]
    settings = load_settings(**app["args"])
    per_stage = (
        settings.stage_timeout_s
        + settings.stage_timeout_per_audio_s * settings.max_audio_duration_s
    )
    longest_request = settings.stage_timeout_s + 2 * per_stage
    assert config["http_options"]["request_timeout_s"] > longest_request


def test_cpu_config_schedules_on_two_cores():
    """`make serve` on a 2-core laptop or CI runner: every replica's CPU request fits at once."""
    (app,) = load("serve_config.cpu.yaml")["applications"]
    requested = sum(
        d.get("ray_actor_options", {}).get("num_cpus", 0) * d.get("num_replicas", 1)
        for d in app["deployments"]
    )
    names = {d["name"] for d in app["deployments"]}
    assert names == {"SpeechIngress", "VocalSeparator", "Transcriber", "Diarizer", "JobRunner"}
    assert requested <= 2


def test_whisper_threads_default_to_the_machine_not_rays_pin(monkeypatch):
    """Ray sets OMP_NUM_THREADS=1 in a 1-CPU replica; CTranslate2 would follow it."""
    from speakerscribe.devices import resolve_cpu_threads

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    assert resolve_cpu_threads(0) == 2
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(32)))
    assert resolve_cpu_threads(0) == 4
    assert resolve_cpu_threads(3) == 3


def test_torch_stages_on_cpu_compute_on_the_machines_cores_not_rays_one(monkeypatch):
    """A fractional Diarizer replica starts with torch on OMP_NUM_THREADS=1 (Ray's pin)."""
    import torch

    from speakerscribe.devices import use_torch_cpu_threads
    from speakerscribe.settings import load_settings

    threads = torch.get_num_threads()
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    try:
        torch.set_num_threads(1)
        use_torch_cpu_threads("cuda", 0)
        assert torch.get_num_threads() == 1  # on a GPU Ray's setting stays
        use_torch_cpu_threads("cpu", 0)
        assert torch.get_num_threads() == 2
        use_torch_cpu_threads("cpu", 1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    settings = load_settings(diarization_cpu_threads=3, separation_cpu_threads=1)
    assert (settings.diarizer.cpu_threads, settings.separator.cpu_threads) == (3, 1)


def test_whisper_workers_fill_a_cpu_and_stay_one_on_a_gpu(monkeypatch):
    from speakerscribe.whisper.loading import resolve_workers

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    assert resolve_workers(0, "cpu", 0) == 2  # two 1-thread workers: measured faster than one of 2
    assert resolve_workers(0, "cuda", 0) == 1
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    assert resolve_workers(0, "cpu", 0) == 4  # 4 threads each (resolve_whisper_threads)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
    assert resolve_workers(0, "cpu", 0) == 1
    assert resolve_workers(3, "cuda", 0) == 3


def test_whisper_workers_together_never_ask_for_more_threads_than_cores(monkeypatch):
    """Two 2-thread workers on 2 cores spin for each other's core: 1 thread each."""
    from speakerscribe.whisper.loading import resolve_whisper_threads, resolve_workers

    for cores, threads in [(1, 1), (2, 1), (4, 2), (8, 4), (16, 4), (64, 4)]:
        monkeypatch.setattr("os.sched_getaffinity", lambda pid, n=cores: set(range(n)))
        workers = resolve_workers(0, "cpu", 0)
        assert resolve_whisper_threads(0, "cpu", workers) == threads
        assert workers * threads <= cores
    assert resolve_whisper_threads(3, "cpu", 2) == 3  # an explicit setting is kept
    assert resolve_whisper_threads(0, "cuda", 1) == 4  # the CPU side of a GPU model
