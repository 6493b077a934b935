"""CTranslate2's output for one window, made ours: its slice of the batch, and its segments."""

from __future__ import annotations

import ctranslate2
import numpy as np
from faster_whisper.transcribe import get_compression_ratio

from speakerscribe.types import Segment, Word
from speakerscribe.whisper.options import DecodeOptions

# Whisper's own rule for dropping a segment as silence (openai/whisper transcribe.py).
NO_SPEECH_THRESHOLD = 0.6
LOGPROB_THRESHOLD = -1.0


def to_segments(
    raw: list[dict], output: dict, options: DecodeOptions, duration: float
) -> list[Segment]:
    """A window's raw segments as ours, or none where Whisper's silence rule says so."""
    no_speech = float(output["no_speech_prob"])
    avg_logprob = float(output["avg_logprob"])
    if no_speech > NO_SPEECH_THRESHOLD and avg_logprob < LOGPROB_THRESHOLD:
        return []  # Whisper's silence rule: the piece holds no speech

    def clamp(seconds: float) -> float:
        """Inside the piece: word alignment can land a frame before 0 or past the end."""
        return round(min(max(float(seconds), 0.0), duration), 3)

    segments: list[Segment] = []
    for item in raw:
        text = item["text"]
        if not text.strip():
            continue
        words = [
            Word(
                word=w["word"],
                start=clamp(w["start"]),
                end=clamp(w["end"]),
                probability=float(w["probability"]),
            )
            for w in item.get("words", [])
        ]
        segments.append(
            Segment(
                id=len(segments),
                seek=0,
                start=clamp(item["start"]),
                end=clamp(item["end"]),
                text=text,
                tokens=list(item["tokens"]),
                temperature=options.temperature,
                avg_logprob=avg_logprob,
                compression_ratio=get_compression_ratio(text),
                no_speech_prob=no_speech,
                words=words,
            )
        )
    return segments


def slice_batch(storage: ctranslate2.StorageView, index: int) -> ctranslate2.StorageView:
    """One item of a batched encoder output, without re-encoding."""
    if storage.device == "cpu":
        return ctranslate2.StorageView.from_array(
            np.ascontiguousarray(np.asarray(storage)[index : index + 1])
        )
    import torch  # CUDA storage: go through torch's view of the same memory

    return ctranslate2.StorageView.from_array(
        torch.as_tensor(storage, device="cuda")[index : index + 1].contiguous()
    )
