"""API keys on a second application (same Serve instance, its own route prefix)."""

from __future__ import annotations

import time

import pytest
import requests

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def secured(server, tmp_path_factory) -> str:
    from ray import serve

    from pipeline_graph import build
    from speakerscribe.settings import load_settings

    key_file = tmp_path_factory.mktemp("keys") / "keys.txt"
    key_file.write_text("sk-from-file\n")
    settings = load_settings(
        api_keys=["sk-test-1"],
        api_keys_file=key_file,
        admin_api_keys=["sk-admin"],
        enable_speaker_diarization=False,
    )
    serve.run(build(settings), name="secured", route_prefix="/secured")
    yield f"{server}/secured"
    serve.delete("secured")


def test_keys_required_but_health_open(secured, testdata):
    jfk = (testdata / "faster-whisper/jfk.flac").read_bytes()
    url = f"{secured}/v1/audio/transcriptions"
    no_key = requests.post(url, files={"file": ("jfk.flac", jfk)}, timeout=120)
    assert no_key.status_code == 401 and no_key.json()["error"]["code"] == "invalid_api_key"
    wrong = requests.post(
        url,
        files={"file": ("jfk.flac", jfk)},
        headers={"Authorization": "Bearer sk-nope"},
        timeout=120,
    )
    assert wrong.status_code == 401
    assert requests.get(f"{secured}/v1/models", timeout=30).status_code == 401
    assert requests.get(f"{secured}/health", timeout=30).status_code == 200
    for key in ("sk-test-1", "sk-from-file"):
        ok = requests.post(
            url,
            files={"file": ("jfk.flac", jfk)},
            headers={"Authorization": f"Bearer {key}"},
            timeout=600,
        )
        assert ok.status_code == 200 and "country" in ok.json()["text"]


def test_openai_client_with_key(secured, testdata):
    from openai import AuthenticationError, OpenAI

    good = OpenAI(base_url=f"{secured}/v1", api_key="sk-test-1", max_retries=0, timeout=600)
    assert "whisper-1" in [m.id for m in good.models.list().data]
    bad = OpenAI(base_url=f"{secured}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(AuthenticationError):
        bad.models.list()


def _as(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_job_belongs_to_the_key_that_made_it(secured, testdata):
    """Another key's job is a 404 on every job route, exactly as a missing one; an admin key
    sees it."""
    jfk = (testdata / "faster-whisper/jfk.flac").read_bytes()
    submitted = requests.post(
        f"{secured}/v1/audio/transcriptions/jobs",
        files={"file": ("jfk.flac", jfk)},
        headers=_as("sk-test-1"),
        timeout=120,
    )
    assert submitted.status_code == 202, submitted.text
    job = submitted.json()
    assert "owner" not in job
    jobs = f"{secured}/v1/audio/jobs"
    missing = requests.get(f"{jobs}/job_0000", headers=_as("sk-from-file"), timeout=30).json()
    for method, path in [
        ("GET", job["id"]),
        ("GET", f"{job['id']}/result"),
        ("POST", f"{job['id']}/cancel"),
        ("DELETE", job["id"]),
    ]:
        other = requests.request(method, f"{jobs}/{path}", headers=_as("sk-from-file"), timeout=30)
        assert other.status_code == 404, (method, path, other.text)
        assert other.json()["error"]["code"] == missing["error"]["code"] == "job_not_found"
    listed = requests.get(jobs, headers=_as("sk-from-file"), timeout=30).json()["data"]
    assert job["id"] not in [j["id"] for j in listed]
    mine = requests.get(jobs, headers=_as("sk-test-1"), timeout=30).json()["data"]
    assert job["id"] in [j["id"] for j in mine]
    admin = requests.get(f"{jobs}/{job['id']}", headers=_as("sk-admin"), timeout=30)
    assert admin.status_code == 200 and admin.json()["id"] == job["id"]
    deadline = time.time() + 300
    while requests.get(f"{jobs}/{job['id']}", headers=_as("sk-test-1"), timeout=30).json()[
        "status"
    ] not in ("succeeded", "failed"):
        assert time.time() < deadline
        time.sleep(0.5)
    result = requests.get(f"{jobs}/{job['id']}/result", headers=_as("sk-test-1"), timeout=30)
    assert result.status_code == 200 and "ask not" in result.json()["text"]
    assert requests.delete(f"{jobs}/{job['id']}", headers=_as("sk-test-1"), timeout=30).ok
