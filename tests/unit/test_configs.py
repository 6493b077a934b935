"""serve_config.yaml and the cluster manifests: valid for Ray, and kept equal."""

from __future__ import annotations

from pathlib import Path

import yaml
from ray.serve.schema import ServeDeploySchema

REPO = Path(__file__).resolve().parents[2]


def test_serve_config_is_valid_and_its_args_are_valid_settings():
    config = yaml.safe_load((REPO / "serve_config.yaml").read_text())
    ServeDeploySchema.model_validate(config)
    from speakerscribe.settings import load_settings

    (app,) = config["applications"]
    assert app["import_path"] == "pipeline_graph:build"
    load_settings(**app["args"])


def test_rayservice_serves_the_same_config():
    service = yaml.safe_load((REPO / "cluster/rayservice.yaml").read_text())
    embedded = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert embedded == yaml.safe_load((REPO / "serve_config.yaml").read_text())
    assert service["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] is True


def test_cluster_launcher_names_gpu_workers():
    launcher = yaml.safe_load((REPO / "cluster/ray-cluster.yaml").read_text())
    assert "gpu_worker" in launcher["available_node_types"]
    assert launcher["available_node_types"]["head"]["resources"] == {"CPU": 0}
