"""Several Whisper models at once: routed by the request's ``model``, batches kept per model.

A second application on the same Serve instance serves the bundled tiny.en as its
default and a small randomly initialised Whisper (converted locally with CTranslate2's
converter) as ``whisper-random``, through Serve model multiplexing.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from ray import serve

from speakerscribe.protocol import OPENAI_MODEL_IDS
from tools.scoring import word_error_rate

pytestmark = pytest.mark.e2e

APP = "two-models"
RANDOM = "whisper-random"


@pytest.fixture(scope="module")
def two_models(server, tmp_path_factory) -> str:
    from pipeline_graph import build
    from speakerscribe.settings import load_settings
    from tools.random_whisper import build_random_whisper

    random_dir = build_random_whisper(
        tmp_path_factory.mktemp("whisper") / "random", size="tiny-test"
    )
    # A batch wait long enough for all eight concurrent uploads to reach one batch: the
    # test is about which pieces share a model call, not about how quickly batches close.
    settings = load_settings(
        whisper_models={RANDOM: str(random_dir)},
        enable_speaker_diarization=False,
        batch_wait_timeout_s=1.0,
    )
    serve.run(build(settings), name=APP, route_prefix=f"/{APP}")
    yield f"{server}/{APP}"
    serve.delete(APP)


@pytest.fixture(scope="module")
def openai_client(two_models):
    from openai import OpenAI

    return OpenAI(base_url=f"{two_models}/v1", api_key="unused", timeout=600, max_retries=0)


def transcriber_stats() -> dict:
    return serve.get_deployment_handle("Transcriber", app_name=APP).stats.remote().result()


def test_models_are_listed_and_unknown_ones_are_404(two_models, openai_client):
    listed = [model.id for model in openai_client.models.list().data]
    assert listed == ["whisper-tiny.en", RANDOM, *OPENAI_MODEL_IDS]
    assert openai_client.models.retrieve(RANDOM).id == RANDOM
    response = requests.get(f"{two_models}/v1/models/whisper-large-v9", timeout=30)
    assert response.status_code == 404 and response.json()["error"]["param"] == "model"


def test_requests_route_by_model_and_batches_never_mix_models(two_models, openai_client, testdata):
    jfk = (testdata / "faster-whisper/jfk.flac").read_bytes()
    reference = (testdata / "faster-whisper/jfk.txt").read_text()

    def transcribe(model: str) -> str:
        return openai_client.audio.transcriptions.create(model=model, file=("jfk.flac", jfk)).text

    alone = transcribe(RANDOM)  # loads the random model on a replica, decodes it by itself
    before = transcriber_stats()
    models = ["whisper-1", RANDOM] * 4
    with ThreadPoolExecutor(len(models)) as pool:
        texts = list(pool.map(transcribe, models))
    after = transcriber_stats()

    # A piece decoded by the wrong model would show: tiny.en reads JFK right, the random
    # model reads gibberish.
    assert word_error_rate(reference, alone) > 0.5
    for model, text in zip(models, texts, strict=True):
        if model == RANDOM:
            assert word_error_rate(reference, text) > 0.5, text
        else:
            assert word_error_rate(reference, text) <= 0.05, text
    served = {
        model: count - before["pieces_by_model"].get(model, 0)
        for model, count in after["pieces_by_model"].items()
    }
    assert served == {"whisper-tiny.en": 4, RANDOM: 4}
    calls = after["model_calls"] - before["model_calls"]
    assert calls < 8  # pieces of one model still share model calls


def test_unknown_model_in_a_transcription_is_a_404(two_models, testdata):
    with open(testdata / "faster-whisper/jfk.flac", "rb") as audio:
        response = requests.post(
            f"{two_models}/v1/audio/transcriptions",
            files={"file": audio},
            data={"model": "whisper-9"},
            timeout=60,
        )
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["param"] == "model" and RANDOM in error["message"]
