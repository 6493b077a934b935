"""Vocal separation: keep the speech, suppress the music under it, before transcription.

Every separator takes and returns 1-D float32 audio at 16 kHz (the rate the rest of the
pipeline uses) and returns exactly as many samples as it was given, so timestamps computed
on the separated audio stay valid for the original.

- ``SoftMaskSeparator``: the offline default. No weights: librosa soft masks. Music
  repeats (nearest-neighbour median, REPET-SIM as in librosa's "Vocal separation" example)
  and holds its notes (median along time); speech does neither, so those two medians
  estimate the music and a soft mask keeps what stands above it.
- ``DemucsSeparator``: production. A demucs model (HTDemucs or a bag of models) and its
  "vocals" stem. Weights come from demucs' remote repository or from a local checkpoint
  directory.

Both work on long audio in overlapping blocks with a linear cross-fade, so memory is bounded
by the block size rather than by the length of the recording.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - imports for type checkers only
    from demucs.apply import BagOfModels
    from demucs.apply import Model as DemucsModel

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
SOFT_MASK = "soft-mask"

__all__ = [
    "SAMPLE_RATE",
    "SOFT_MASK",
    "VocalSeparator",
    "SoftMaskSeparator",
    "DemucsSeparator",
    "load_separator",
]


class VocalSeparator(Protocol):
    """Anything that maps 16 kHz mono float32 audio to its vocals, same length."""

    def __call__(self, audio: np.ndarray) -> np.ndarray: ...


def _as_mono_float32(audio: np.ndarray) -> np.ndarray:
    """Validate the input contract once, so the separators can assume it."""
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"expected 1-D mono audio at {SAMPLE_RATE} Hz, got shape {audio.shape}")
    audio = audio.astype(np.float32, copy=False)
    if not np.all(np.isfinite(audio)):
        # A single NaN would spread through every STFT frame / conv it touches.
        audio = np.nan_to_num(audio, nan=0.0, posinf=0.0, neginf=0.0)
    return audio


def _blockwise(
    audio: np.ndarray,
    fn: Callable[[np.ndarray], np.ndarray],
    block: int,
    overlap: int,
) -> np.ndarray:
    """Apply ``fn`` to overlapping blocks and cross-fade them linearly.

    Bounds memory (and, for the soft mask, the quadratic-ish neighbour search) for
    recordings of any length. Each block overlaps the previous one by exactly ``overlap``
    samples and the complementary linear ramps sum to one there, so a separator that
    returned its input would return the input exactly.
    """
    n = len(audio)
    if n <= block:
        return fn(audio)
    overlap = min(max(int(overlap), 0), block - 1)
    hop = block - overlap
    starts = [0]
    while starts[-1] + block < n:
        starts.append(starts[-1] + hop)
    ramp_up = ((np.arange(overlap, dtype=np.float32) + 0.5) / max(overlap, 1)).astype(np.float32)
    ramp_down = (1.0 - ramp_up).astype(np.float32)
    out = np.zeros(n, dtype=np.float32)
    for index, start in enumerate(starts):
        end = min(start + block, n)
        # np.array copies: the ramps below must never scale the caller's audio in place.
        piece = np.array(fn(audio[start:end]), dtype=np.float32)
        if overlap and index > 0:
            piece[:overlap] *= ramp_up
        if overlap and index < len(starts) - 1:
            piece[-overlap:] *= ramp_down
        out[start:end] += piece
    return out


class SoftMaskSeparator:
    """Speech/music separation with librosa soft masks; no weights needed.

    The offline default. It starts from the "Vocal separation" example of librosa's
    gallery (REPET-SIM: ``librosa.decompose.nn_filter`` with a cosine metric; the median of
    each frame's nearest neighbours estimates the *repeating* music). On its own that
    removes only ~3 dB more music than speech from a short clip (an 11 s excerpt of a song
    hardly repeats) and Whisper then reads the masked speech worse than the mixture. So the
    music estimate is the element-wise maximum of two cues from one high-resolution STFT:

    - repeating: the nearest-neighbour median (``neighbours`` frames at least
      ``repeat_width_s`` apart);
    - sustained: a median along time over ``sustain_s`` (held notes and chords are steady
      spectral lines; speech harmonics glide with the pitch and last a syllable).

    The speech estimate is a median along frequency over ``freq_bins`` bins: speech spreads
    its energy over formants, pitch glides and broadband consonants, a note does not. The
    mask ``librosa.util.softmask(speech, margin * music, power)`` keeps the time-frequency
    bins where speech dominates; ``power=1`` (a soft, Wiener-like mask) distorts speech less
    than a sharper one, which matters more to Whisper than the last dB of suppression.
    ``n_fft`` is large (256 ms at 16 kHz) so that steady music partials fall in narrow bins
    the time median can catch; the hop is a quarter of it.

    Tuned on speech under music at negative SNRs; ``tests/unit/test_separation.py`` shows
    what it does to Whisper's WER there.
    """

    def __init__(
        self,
        *,
        n_fft: int = 4096,
        hop_length: int = 1024,
        sustain_s: float = 0.5,
        freq_bins: int = 17,
        repeat_width_s: float = 1.0,
        neighbours: int | None = 20,
        margin: float = 1.0,
        power: float = 1.0,
        floor: float = 0.0,
        block_s: float = 60.0,
        overlap_s: float = 2.0,
        silence_rms: float = 1e-5,
    ) -> None:
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.sustain_frames = _odd(sustain_s * SAMPLE_RATE / hop_length)
        self.freq_bins = _odd(freq_bins)
        self.repeat_width = max(1, int(round(repeat_width_s * SAMPLE_RATE / hop_length)))
        self.neighbours = neighbours
        self.margin = margin
        self.power = power
        self.floor = floor
        # Blocks bound memory (one block's STFT: 2049 x 938 complex64 ~ 15 MB, plus the
        # neighbour search's distance matrix, which grows with the square of the frames).
        self.block = int(block_s * SAMPLE_RATE)
        self.overlap = int(overlap_s * SAMPLE_RATE)
        self.silence_rms = silence_rms

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        audio = _as_mono_float32(audio)
        if audio.size == 0:
            return audio.copy()
        return _blockwise(audio, self._separate, self.block, self.overlap)

    def _separate(self, audio: np.ndarray) -> np.ndarray:
        import librosa
        from scipy.ndimage import median_filter

        rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
        if rms < self.silence_rms:
            # Digital silence (or close): nothing to keep, and cosine similarity of
            # all-zero frames is undefined.
            return np.zeros_like(audio)
        if len(audio) < self.n_fft:
            # Shorter than one analysis window: no spectral structure to judge music by.
            return audio.copy()

        stft = librosa.stft(audio, n_fft=self.n_fft, hop_length=self.hop_length)
        magnitude = np.abs(stft)
        music = median_filter(magnitude, size=(1, self.sustain_frames), mode="reflect")
        # nn_filter skips neighbours closer than `width` frames; with few frames left
        # (clips under ~3 s) there is nothing to call repetition: sustained cue alone.
        if magnitude.shape[1] >= 2 * self.repeat_width + 12:
            repeating = librosa.decompose.nn_filter(
                # A tiny floor keeps cosine distances defined on silent frames.
                magnitude + np.float32(1e-8),
                aggregate=np.median,
                metric="cosine",
                width=self.repeat_width,
                k=self.neighbours,
            )
            np.maximum(music, repeating, out=music)
        speech = median_filter(magnitude, size=(self.freq_bins, 1), mode="reflect")
        mask = librosa.util.softmask(speech, self.margin * music, power=self.power)
        if self.floor > 0:
            np.maximum(mask, self.floor, out=mask)
        vocals = librosa.istft(
            mask * stft, hop_length=self.hop_length, n_fft=self.n_fft, length=len(audio)
        )
        return np.nan_to_num(vocals.astype(np.float32, copy=False))


def _odd(value: float) -> int:
    """Median filter sizes: odd, so the window is centred on the bin it filters."""
    return max(1, int(round(value))) | 1


def _resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling along the last axis (soxr, via librosa)."""
    if orig_sr == target_sr:
        return audio
    import librosa

    return librosa.resample(
        audio, orig_sr=orig_sr, target_sr=target_sr, res_type="soxr_hq", axis=-1
    )


class DemucsSeparator:
    """Vocals stem of a demucs model (HTDemucs, HDemucs or a ``BagOfModels``).

    The model works at its own rate (44.1 kHz stereo for the published ones); mono 16 kHz
    input is resampled up and duplicated across channels, and the vocals come back
    downmixed and resampled to 16 kHz with the input's length.
    """

    def __init__(
        self,
        model: BagOfModels | DemucsModel,
        device: str = "cpu",
        segment: float | None = None,
        *,
        overlap: float = 0.25,
        block_s: float = 120.0,
        block_overlap_s: float = 2.0,
    ) -> None:
        if "vocals" not in list(model.sources):
            raise ValueError(f"model has no 'vocals' source (sources: {model.sources})")
        if segment is not None and segment > _max_segment(model):
            # As demucs.separate: a transformer cannot attend past its training length.
            raise ValueError(
                f"segment {segment} s is longer than the model allows ({_max_segment(model)} s)"
            )
        self.model = model.to(device).eval()
        self.device = device
        self.segment = segment
        self.overlap = overlap
        self.samplerate = int(model.samplerate)
        self.audio_channels = int(model.audio_channels)
        self.vocals_index = list(model.sources).index("vocals")
        # apply_model keeps all four stems of the whole input at the model rate; blocks
        # cap that (2 min at 44.1 kHz stereo x 4 stems ~ 170 MB) for long recordings.
        self.block = int(block_s * SAMPLE_RATE)
        self.block_overlap = int(block_overlap_s * SAMPLE_RATE)

    @classmethod
    def from_pretrained(
        cls,
        name: str,
        repo: str | Path | None = None,
        device: str = "cpu",
        **kwargs,
    ) -> DemucsSeparator:
        """Load ``name`` (a bag name such as ``htdemucs`` or a model signature).

        ``repo`` is a local directory of ``<sig>[-<checksum>].th`` files and ``<name>.yaml``
        bags, as demucs' ``LocalRepo`` expects; ``None`` uses demucs' own remote repository
        (needs internet).
        """
        from demucs.pretrained import get_model

        repo_path = None if repo is None else Path(repo)
        if repo_path is not None and not repo_path.is_dir():
            # demucs calls sys.exit via fatal() here; a clear exception is kinder to a server.
            raise FileNotFoundError(f"demucs model repository {repo_path} is not a directory")
        model = get_model(name, repo=repo_path)
        logger.info("demucs model %s loaded from %s", name, repo_path or "demucs' remote repo")
        return cls(model, device=device, **kwargs)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        audio = _as_mono_float32(audio)
        if audio.size == 0:
            return audio.copy()
        return _blockwise(audio, self._separate, self.block, self.block_overlap)

    def _separate(self, audio: np.ndarray) -> np.ndarray:
        import torch
        from demucs.apply import apply_model

        upsampled = _resample(audio, SAMPLE_RATE, self.samplerate)
        mix = torch.from_numpy(np.ascontiguousarray(upsampled, dtype=np.float32))
        mix = mix.unsqueeze(0).expand(self.audio_channels, -1)
        # demucs models are trained on normalised mixtures (as demucs.separate does).
        ref_mean = mix.mean(0)
        mean, std = ref_mean.mean(), ref_mean.std()
        if not torch.isfinite(std) or std < 1e-8:
            return np.zeros_like(audio)
        mix = ((mix - mean) / std).unsqueeze(0)
        with torch.inference_mode():
            sources = apply_model(
                self.model,
                mix,
                shifts=0,
                split=True,
                overlap=self.overlap,
                device=self.device,
                segment=self.segment,
            )
        stem = sources[0, self.vocals_index] * std + mean
        vocals = stem.mean(0).cpu().numpy().astype(np.float32)
        out = _resample(vocals, self.samplerate, SAMPLE_RATE)
        out = _fit_length(out, len(audio))
        return np.nan_to_num(out.astype(np.float32, copy=False))


def _max_segment(model) -> float:
    """Longest ``segment`` demucs accepts for this model (HTDemucs: its training length)."""
    from demucs.apply import BagOfModels
    from demucs.htdemucs import HTDemucs

    if isinstance(model, HTDemucs):
        return float(model.segment)
    if isinstance(model, BagOfModels):
        return float(model.max_allowed_segment)
    return float("inf")


def _fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    """Trim or zero-pad to ``length`` (resampling round trips can be off by a sample)."""
    if len(audio) >= length:
        return audio[:length]
    return np.pad(audio, (0, length - len(audio)))


def load_separator(
    model: str | None,
    *,
    repo: str | Path | None = None,
    device: str = "cpu",
) -> VocalSeparator:
    """Build the separator a config names: ``None``/``"soft-mask"`` or a demucs model name."""
    if model is None or model == SOFT_MASK:
        return SoftMaskSeparator()
    return DemucsSeparator.from_pretrained(model, repo=repo, device=device)
