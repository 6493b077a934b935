"""Speaker diarization: who speaks when, as overlap-aware ``SpeakerTurn`` lists.

Every diarizer is a ``pyannote.audio.Pipeline`` loaded with ``Pipeline.from_pretrained``
and wrapped by ``PyannotePipelineDiarizer``:

- the bundled offline default (``"bundled"``) is the local pipeline directory that
  ``make models`` writes into the model cache (``speakerscribe.diarization.bundled``);
- a hub id such as ``pyannote/speaker-diarization-community-1`` (needs a token);
- any local directory holding a ``config.yaml`` whose checkpoints are ``$model/<subdir>``.

Audio is always handed to pyannote in memory (``{"waveform", "sample_rate"}``): the
server has already decoded it, and torchcodec cannot decode files here anyway. A
recording far quieter than usual is raised first (``speakerscribe.loudness``), whichever
pipeline runs: pyannote's segmentation models gate out chunks under a fixed level.
"""

from __future__ import annotations

import speakerscribe.diarization.pyannote_offline  # noqa: F401  (before pyannote.audio)

# isort: split
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from pyannote.audio import Model, Pipeline
from pyannote.core import Annotation

from speakerscribe.bundled_models import DEFAULT_MODEL_CACHE, BundledModelMissing, is_bundled
from speakerscribe.devices import resolve_cpu_threads
from speakerscribe.diarization.bundled import PIPELINE_CLASS, PIPELINE_DIRECTORY
from speakerscribe.diarization.known_speakers import identify_speakers, name_turns
from speakerscribe.diarization.overlap import merge_regions, overlap_regions
from speakerscribe.diarization.sub_batches import SubBatches
from speakerscribe.loudness import raised_to_level
from speakerscribe.types import (
    SAMPLE_RATE,
    Diarization,
    DiarizationOptions,
    SpeakerTurn,
)


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
        "waveform": torch.from_numpy(np.ascontiguousarray(raised_to_level(waveform)))[None],
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


class PyannotePipelineDiarizer:
    """Production diarizer: any ``pyannote.audio.Pipeline`` (4.x or legacy output)."""

    def __init__(self, pipeline: Pipeline, device: str = "cpu"):
        self.pipeline = pipeline
        self.device = torch.device(device)
        self.sub_batches = SubBatches(1)
        """How the pipeline's batches run (``use_cpu_threads``); an overlap detector on
        the same model runs its own the same way."""
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
        if len(audio) == 0 or not np.any(audio):
            return []
        with torch.inference_mode(), warnings.catch_warnings():
            # pyannote warns when fewer speakers than min_speakers were found
            warnings.simplefilter("ignore")
            output = self.pipeline(_as_pyannote_file(audio), **kwargs)
        return annotation_to_turns(_annotation_of(output), len(audio) / SAMPLE_RATE)

    def embed(self, audio: np.ndarray) -> np.ndarray:
        return embed_clip(self.pipeline, audio, self.device)

    def use_cpu_threads(self, cpu_threads: int) -> None:
        """On CPU, compute on ``resolve_cpu_threads(cpu_threads)`` threads (torch's setting
        is the process's). A pipeline that can split its batches over threads (the
        bundled one) gets that many workers of one torch thread each; any other pipeline
        gets that many torch intra-op threads. On a GPU nothing changes.
        """
        if self.device.type != "cpu":
            return
        threads = resolve_cpu_threads(cpu_threads)
        use_sub_batches = getattr(self.pipeline, "use_sub_batches", None)
        if use_sub_batches is None:
            torch.set_num_threads(threads)
            return
        torch.set_num_threads(1)
        self.sub_batches = SubBatches(threads)
        use_sub_batches(self.sub_batches)


def bundled_pipeline_directory(cache_dir: str | Path | None = None) -> Path:
    """Where ``make models`` writes the bundled pipeline's ``config.yaml``."""
    return Path(DEFAULT_MODEL_CACHE if cache_dir is None else cache_dir).expanduser() / (
        PIPELINE_DIRECTORY
    )


def load_diarizer(
    source: str | None,
    *,
    token: str | None = None,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
    cpu_threads: int = 0,
) -> PyannotePipelineDiarizer:
    """``None``/``"bundled"`` → the bundled offline pipeline; else a pyannote pipeline.

    For the bundled pipeline ``cache_dir`` is the speakerscribe model cache (where
    ``make models`` put it); for a hub pipeline it is the Hugging Face cache. On CPU
    it computes on ``cpu_threads`` (``PyannotePipelineDiarizer.use_cpu_threads``).
    """
    if source is None or is_bundled(source):
        directory = bundled_pipeline_directory(cache_dir)
        config = directory / "config.yaml"
        if not config.is_file():
            raise BundledModelMissing(
                f"bundled diarizer not found at {directory}; run `make models` to install it"
            )
        if PIPELINE_CLASS not in config.read_text():
            raise BundledModelMissing(
                f"{config} was written by an older release; run `make models` to rewrite it"
            )
        diarizer = PyannotePipelineDiarizer.from_pretrained(str(directory), device=device)
    else:
        diarizer = PyannotePipelineDiarizer.from_pretrained(
            source,
            token=token,
            cache_dir=None if cache_dir is None else str(cache_dir),
            device=device,
        )
    diarizer.use_cpu_threads(cpu_threads)
    return diarizer


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
    raised = raised_to_level(audio)  # once: the diarizer and the detector take it as it is
    turns = diarizer(
        raised,
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
            found = merge_regions([*found, *overlap_detector(raised)])
        overlaps = found
    return Diarization(turns, overlaps, identified)
