"""Each model stage's own section of the settings: what its replicas are bound with.

``Settings`` stays flat, since its field names are the public config (``serve_config.yaml``
args, ``SPEAKERSCRIBE_*`` variables). A model stage's replica gets only its section, so
its actor spec holds no key, token or database URL it has no use for, and a field added
for one stage cannot leak into another by accident.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict

Device = Literal["auto", "cpu", "cuda"]

# The flat settings' secret fields, and those the whole-pipeline stages keep (for_stage).
SECRETS = (
    "hf_token",
    "webhook_secret",
    "api_keys",
    "api_keys_file",
    "admin_api_keys",
    "job_store_url",
)
STAGE_SECRETS: dict[str, tuple[str, ...]] = {
    # checks keys; refuses webhook jobs when nothing can sign them; reads and writes jobs
    "ingress": SECRETS,
    "job_runner": ("webhook_secret", "job_store_url"),  # signs job webhooks; works on jobs
}  # the model stages get their own sections instead: Settings.separator and the rest


class StageSettings(BaseModel):
    """What every model stage's replica needs."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    # section field → the flat settings field it is read from, where the names differ
    SOURCES: ClassVar[dict[str, str]] = {}

    heap_trim_interval_s: float
    model_cache_dir: Path

    @classmethod
    def of(cls, settings: object) -> Self:
        """This stage's section of the flat ``Settings``."""
        return cls(
            **{
                field: getattr(settings, cls.SOURCES.get(field, field))
                for field in cls.model_fields
            }
        )


class SeparatorSettings(StageSettings):
    SOURCES = {
        "model": "separation_model",
        "repo": "separation_repo",
        "device": "separation_device",
        "cpu_threads": "separation_cpu_threads",
    }

    model: str
    repo: Path | None
    device: Device
    cpu_threads: int


class TranscriberSettings(StageSettings):
    SOURCES = {
        "model": "whisper_model",
        "other_models": "whisper_models",
        "device": "whisper_device",
        "compute_type": "whisper_compute_type",
        "cpu_threads": "whisper_cpu_threads",
        "workers": "whisper_workers",
    }

    model: str
    model_id: str  # the default model's id as requests name it
    other_models: dict[str, str]  # served id → model id or directory, loaded on first use
    max_models_per_replica: int
    device: Device
    compute_type: str
    cpu_threads: int
    workers: int
    max_batch_size: int
    batch_wait_timeout_s: float
    pack_short_pieces: bool


class DiarizerSettings(StageSettings):
    SOURCES = {
        "pipeline": "diarization_pipeline",
        "device": "diarization_device",
        "cpu_threads": "diarization_cpu_threads",
    }

    pipeline: str
    hf_token: str | None  # gated pyannote pipelines: the only secret a model stage holds
    device: Device
    cpu_threads: int
    known_speaker_threshold: float
