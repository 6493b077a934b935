"""Live speaker labels against the references, for the turn policies of a live session.

Streams pyannote's sample.wav (a two-speaker call, ``sample.rttm``) and the longer
conversation of MANIFEST.md (sample.wav, dev00.wav, dev01.wav back to back, references
from ``sample.rttm`` and ``debug.development.rttm`` shifted) through an in-process
``RealtimeTranscriptionSession`` with the embedded Whisper and speaker encoder, as fast as
it takes the frames, once per policy:

- ``long_turn_s``: past this, a 250 ms pause ends a turn (30: only the 500 ms pause does);
- ``turn_pause_s``: a pause between words that also splits a sentence for labelling
  (99: only sentence ends do).

It prints, per policy and stream: items, the longest item, speakers found, and the DER of
the ``.segment`` events (collar 0, overlap scored; uncovered speech counts as missed).

    python load/evaluate_live_speakers.py
"""

from __future__ import annotations

import asyncio
import sys
import threading
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import soxr  # noqa: E402
from _server import testdata_dir  # noqa: E402

from speakerscribe import realtime  # noqa: E402
from speakerscribe.audio import decode_audio_bytes  # noqa: E402
from speakerscribe.scoring import diarization_error_rate, read_rttm  # noqa: E402
from speakerscribe.types import SAMPLE_RATE, SpeakerTurn  # noqa: E402

POLICIES = [(30.0, 99.0), (30.0, 0.3), (6.0, 99.0), (6.0, 0.3)]
STREAMS = {"sample": ["sample"], "conversation": ["sample", "dev00", "dev01"]}


def stream_of(names: list[str]) -> tuple[np.ndarray, list[SpeakerTurn]]:
    data = testdata_dir() / "pyannote"
    audio, turns, offset = [], [], 0.0
    for name in names:
        clip = decode_audio_bytes((data / f"{name}.wav").read_bytes())
        rttm = data / ("sample.rttm" if name == "sample" else "debug.development.rttm")
        for turn in read_rttm(rttm, name)[name]:
            turns.append(
                SpeakerTurn(offset + turn.start, offset + turn.end, f"{name}:{turn.speaker}")
            )
        audio.append(clip)
        offset += clip.shape[0] / SAMPLE_RATE
    return np.concatenate(audio), turns


def live_segments(
    audio: np.ndarray, whisper, encoder, long_turn_s: float, turn_pause_s: float
) -> tuple[list[dict], list[float]]:
    """The session's ``.segment`` events and its items' lengths (s)."""
    from resemblyzer.audio import normalize_volume

    one_at_a_time = threading.Lock()

    def decode(piece, options):
        with one_at_a_time:
            return whisper.transcribe([piece], options)[0].segments

    async def transcribe(piece, options):
        return await asyncio.to_thread(decode, piece, options)

    async def embed(piece):
        louder = normalize_volume(piece, -30, increase_only=True)
        return await asyncio.to_thread(encoder.embed_utterance, louder)

    events: list[dict] = []

    async def emit(event: dict) -> None:
        events.append(event)

    async def run() -> None:
        session = realtime.RealtimeTranscriptionSession(
            transcribe, emit, embed, long_turn_s=long_turn_s, turn_pause_s=turn_pause_s
        )
        await session.start()
        diarized = {"type": "transcription", "enable_speaker_diarization": True}
        await session.handle_event({"type": "session.update", "session": diarized})
        pcm = (
            (np.clip(soxr.resample(audio, SAMPLE_RATE, 24_000), -1, 1) * 32767)
            .astype("<i2")
            .tobytes()
        )
        step = int(0.1 * 24_000) * 2  # 100 ms frames of OpenAI's 24 kHz PCM16
        for offset in range(0, len(pcm), step):
            await session.append_pcm16(pcm[offset : offset + step])
            await asyncio.sleep(0)
        await session.close()

    asyncio.run(run())
    segments = [e for e in events if e["type"].endswith(".segment")]
    items = [e["usage"]["seconds"] for e in events if e["type"].endswith(".completed")]
    return segments, items


def main() -> None:
    warnings.filterwarnings("ignore")
    from resemblyzer import VoiceEncoder

    from speakerscribe.embedded import resemblyzer_weights_path
    from speakerscribe.transcription import BatchTranscriber, load_whisper_model

    whisper = BatchTranscriber(load_whisper_model("embedded", device="cpu"))
    encoder = VoiceEncoder("cpu", verbose=False, weights_fpath=resemblyzer_weights_path())
    header = [
        "long_turn_s",
        "turn_pause_s",
        "stream       ",
        "items",
        "longest s",
        "speakers",
        "   DER",
    ]
    print(" ".join(header))
    streams = {stream: stream_of(names) for stream, names in STREAMS.items()}
    for long_turn_s, pause_s in POLICIES:
        for stream, (audio, reference) in streams.items():
            segments, items = live_segments(audio, whisper, encoder, long_turn_s, pause_s)
            hypothesis = [SpeakerTurn(s["start"], s["end"], s["speaker"]) for s in segments]
            der = diarization_error_rate(reference, hypothesis)
            speakers = len({s["speaker"] for s in segments})
            print(
                f"{long_turn_s:>11g} {pause_s:>12g} {stream:<13} {len(items):>5} "
                f"{max(items):>9.1f} "
                f"{speakers:>8} {der:>6.3f}",
                flush=True,
            )
    print(
        f"\nshipped: long_turn_s 6, turn_pause_s {realtime.TURN_PAUSE_S:g}"
        "\ncommand: python load/evaluate_live_speakers.py"
    )


if __name__ == "__main__":
    main()
