"""Settings: env prefix, defaults give the bundled models, errors name the field."""

from __future__ import annotations

import pytest

from speakerscribe.settings import SettingsError, load_settings


def test_defaults_are_the_bundled_models():
    settings = load_settings()
    assert settings.whisper_model == "bundled" and settings.diarization_pipeline == "bundled"
    assert settings.model_id == "whisper-tiny.en"


def test_the_former_name_of_the_bundled_models_still_loads():
    """Configs written before the rename say 'embedded'."""
    settings = load_settings(whisper_model="embedded", diarization_pipeline="embedded")
    assert settings.whisper_model == "bundled" and settings.diarization_pipeline == "bundled"
    assert settings.model_id == "whisper-tiny.en"


def test_env_prefix(monkeypatch):
    monkeypatch.setenv("SPEAKERSCRIBE_BEAM_SIZE", "2")
    assert load_settings().beam_size == 2


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"beam_size": 0}, "beam_size"),
        ({"max_piece_s": 45}, "max_piece_s"),
        ({"separation_repo": "/no/such/dir"}, "separation_repo"),
        ({"whisper_model": " "}, "whisper_model"),
        ({"unknown_knob": 1}, "unknown_knob"),
        ({"whisper_models": {"mine": "/no/such/model"}}, "whisper_models"),
        ({"whisper_models": {"whisper-1": "tiny"}}, "whisper_models"),
        ({"model_aliases": {"gpt-4o-transcribe": "large-v9"}}, "model_aliases"),
        ({"max_models_per_replica": 0}, "max_models_per_replica"),
    ],
)
def test_bad_values_name_the_field(overrides, field):
    with pytest.raises(SettingsError) as raised:
        load_settings(**overrides)
    assert field in str(raised.value)


def test_served_models_are_the_default_then_the_others(tmp_path):
    settings = load_settings(whisper_models={"random": str(tmp_path)})
    assert settings.served_models == ["whisper-tiny.en", "random"]


def test_each_stage_gets_only_the_secrets_it_uses():
    from speakerscribe.stage_settings import SECRETS

    settings = load_settings(
        hf_token="hf_secret", webhook_secret="whsec_x", api_keys=["k1"], admin_api_keys=["k1"]
    )
    held = {
        stage: {name for name in SECRETS if getattr(settings.for_stage(stage), name)}
        for stage in ("ingress", "job_runner")
    }
    assert held == {
        "ingress": {"hf_token", "webhook_secret", "api_keys", "admin_api_keys"},
        "job_runner": {"webhook_secret"},
    }
    assert settings.api_keys == ["k1"]  # a copy: the original keeps them
    # a model stage's section holds no secret but the diarizer's token
    for section in (settings.separator, settings.transcriber, settings.diarizer):
        assert set(type(section).model_fields) & set(SECRETS) <= {"hf_token"}
    assert settings.diarizer.hf_token == "hf_secret"


def test_stage_sections_carry_their_stage_settings(tmp_path):
    settings = load_settings(
        whisper_device="cpu",
        whisper_models={"other": str(tmp_path)},
        diarization_device="cpu",
        known_speaker_threshold=0.6,
        separation_model="htdemucs",
        heap_trim_interval_s=3,
    )
    assert settings.transcriber.device == "cpu"
    assert settings.transcriber.model_id == settings.model_id
    assert settings.transcriber.other_models == {"other": str(tmp_path)}
    assert settings.diarizer.known_speaker_threshold == 0.6
    assert settings.separator.model == "htdemucs"
    sections = (settings.separator, settings.transcriber, settings.diarizer)
    assert {section.heap_trim_interval_s for section in sections} == {3}


def test_the_graph_binds_stage_settings_without_foreign_secrets():
    """What ``serve run`` ships to each replica: the bound init arguments of the DAG."""
    from ray.serve.deployment import Application

    from deployments.stages import StageHandles
    from pipeline_graph import build

    app = build(load_settings(hf_token="hf_secret", api_keys=["k1"]))
    seen: dict[str, object] = {}

    def walk(node: Application) -> None:
        deployment = node._bound_deployment
        for argument in deployment.init_args:
            if isinstance(argument, Application):
                walk(argument)
            elif isinstance(argument, StageHandles):
                for handle in argument.by_name().values():
                    walk(handle)
            elif hasattr(argument, "heap_trim_interval_s"):  # Settings or a stage's section
                seen[deployment.name] = argument

    walk(app)
    assert seen["SpeechIngress"].api_keys == ["k1"]
    assert seen["Diarizer"].hf_token == "hf_secret" and not hasattr(seen["Diarizer"], "api_keys")
    for stage in ("Transcriber", "VocalSeparator"):
        assert not {"api_keys", "hf_token"} & set(type(seen[stage]).model_fields)
    assert not seen["JobRunner"].api_keys and seen["JobRunner"].hf_token is None
