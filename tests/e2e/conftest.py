"""One running Serve application for the whole e2e session, reached over real HTTP."""

from __future__ import annotations

import base64
import os
import tempfile
import time

import pytest
import requests

PORT = int(os.environ.get("SPEAKERSCRIBE_TEST_PORT", "8123"))
METRICS_PORT = int(os.environ.get("SPEAKERSCRIBE_TEST_METRICS_PORT", "8298"))
BASE_URL = f"http://127.0.0.1:{PORT}"
# Webhooks are signed with this secret, and may reach the name "localhost" (a listener on
# 127.0.0.1): only that name, so every other loopback spelling is still refused.
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"speakerscribe-e2e-webhook-secret").decode()
WEBHOOK_ALLOW = ["localhost"]
# Jobs are kept on disk (the job store under data_dir): each test session starts empty.
os.environ.setdefault("SPEAKERSCRIBE_DATA_DIR", tempfile.mkdtemp(prefix="speakerscribe-e2e-"))


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    # 2 real cores here: a larger logical count lets every replica be placed.
    ray.init(
        num_cpus=8,
        include_dashboard=False,
        configure_logging=False,
        log_to_driver=False,
        _metrics_export_port=METRICS_PORT,  # Prometheus text, as a cluster's scraper sees it
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def server(ray_cluster) -> str:
    """The full application (bundled models) on BASE_URL; torn down at the end."""
    from ray import serve

    from pipeline_graph import build
    from speakerscribe.settings import load_settings

    serve.start(http_options={"host": "127.0.0.1", "port": PORT})
    settings = load_settings(webhook_secret=WEBHOOK_SECRET, webhook_allow=WEBHOOK_ALLOW)
    serve.run(build(settings), name="speakerscribe", route_prefix="/", blocking=False)
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            if requests.get(f"{BASE_URL}/health", timeout=10).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(1)
    else:
        pytest.fail("the application did not become healthy within 300 s")
    yield BASE_URL
    serve.shutdown()


@pytest.fixture(scope="session")
def webhook_secret() -> str:
    return WEBHOOK_SECRET


@pytest.fixture(scope="session")
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=f"{server}/v1", api_key="not-needed", timeout=600, max_retries=0)


@pytest.fixture(scope="session")
def metrics_url(server) -> str:
    return f"http://127.0.0.1:{METRICS_PORT}/metrics"
