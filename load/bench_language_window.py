"""Bytes a long upload sends to the Transcriber for language detection (no Ray, no model).

Builds an upload of the shared clips repeated to ``--hours`` with leading silence, runs it
through ``TranscriptionService`` with fake stages that record what each call receives,
and prints the audio sent to ``detect_language`` against what the previous flow sent
(everything from the first speech to the end). Each call to a stage is a copy in Ray's
object store, so these are the object-store bytes of that one call.

    python load/bench_language_window.py [--hours 4]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import numpy as np
from _server import REPO, long_conversation, wav_bytes

sys.path.insert(0, str(REPO))

from speakerscribe.pipeline.service import TranscriptionService
from speakerscribe.protocol import TranscriptionRequest
from speakerscribe.settings import load_settings
from speakerscribe.types import SAMPLE_RATE, Diarization, Segment

LEADING_SILENCE_S = 5.0


class RecordingStages:
    """Stages that answer at once and count the float32 bytes each call is handed."""

    def __init__(self) -> None:
        self.bytes: dict[str, int] = {}

    def _count(self, stage: str, audio: np.ndarray) -> None:
        self.bytes[stage] = self.bytes.get(stage, 0) + audio.nbytes

    async def separate(self, audio: np.ndarray) -> np.ndarray:
        return audio

    async def detect_language(self, audio: np.ndarray, model: str) -> str:
        self._count("language detection", audio)
        return "en"

    async def transcribe(self, piece: np.ndarray, options) -> list[Segment]:
        self._count("transcription", piece)
        return []

    async def diarize(self, audio: np.ndarray, options) -> Diarization:
        self._count("diarization", audio)
        return Diarization([], [], {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=4.0)
    args = parser.parse_args()
    speech = long_conversation(args.hours * 60)
    audio = np.concatenate([np.zeros(int(LEADING_SILENCE_S * SAMPLE_RATE), np.float32), speech])
    data = wav_bytes(audio)
    stages = RecordingStages()
    settings = load_settings(max_audio_duration_s=args.hours * 3600 + 60)
    service = TranscriptionService(settings, stages)
    started = time.perf_counter()
    request = TranscriptionRequest(response_format="json", enable_speaker_diarization=False)
    asyncio.run(service.transcribe(data, request))
    elapsed = time.perf_counter() - started
    sent = stages.bytes["language detection"]
    previous = (audio.shape[0] - int(LEADING_SILENCE_S * SAMPLE_RATE)) * 4  # first speech → end
    mb = 1e6
    print(f"upload: {audio.shape[0] / SAMPLE_RATE / 3600:.2f} h ({len(data) / mb:.0f} MB WAV)")
    print(f"language detection, now:      {sent / mb:8.2f} MB (at most 30 s of float32 audio)")
    print(f"language detection, previous: {previous / mb:8.2f} MB (first speech to the end)")
    print(f"ratio previous / now: {previous / sent:.0f}x")
    print(f"transcription pieces, for scale: {stages.bytes['transcription'] / mb:.0f} MB")
    print(f"wall time (decode, VAD, chunking; fake models): {elapsed:.0f} s")
    print(f"command: python load/bench_language_window.py --hours {args.hours:g}")


if __name__ == "__main__":
    main()
