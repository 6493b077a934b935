"""Settings: env prefix, defaults give the embedded models, errors name the field."""

from __future__ import annotations

import pytest

from speakerscribe.settings import SettingsError, load_settings


def test_defaults_are_the_embedded_models():
    settings = load_settings()
    assert settings.whisper_model == "embedded" and settings.diarization_pipeline == "embedded"
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
