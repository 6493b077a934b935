"""Live speaker labels against the references: speakers found and DER per file.

Streams pyannote's sample.wav (a two-speaker call, ``sample.rttm``), dev00.wav and
dev01.wav (two AMI speakers, ``debug.development.rttm`` within
``debug.development.uem``), and the three back to back as one conversation (four
people: MEE009 and MEE012 speak in both dev files), through an in-process
``RealtimeTranscriptionSession`` with the bundled Whisper and the bundled diarizer's
speaker embedding (``diarizer.embed``, what the Diarizer deployment serves live
sessions). Frames go in as fast as the session takes them, or at real time with
``--realtime``.

It prints, per stream: items, speakers found / in the reference, and the DER of the
``.segment`` events (pyannote.metrics, collar 0, overlap scored; uncovered speech counts
as missed).

    python load/evaluate_live_speakers.py [--realtime]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import soxr  # noqa: E402
from _server import testdata_dir  # noqa: E402

from speakerscribe import realtime  # noqa: E402
from speakerscribe.audio import decode_audio_bytes  # noqa: E402
from speakerscribe.types import SAMPLE_RATE, SpeakerTurn  # noqa: E402
from tools.scoring import diarization_error_rate, read_rttm  # noqa: E402

STREAMS = {
    "sample": ["sample"],
    "dev00": ["dev00"],
    "dev01": ["dev01"],
    "conversation": ["sample", "dev00", "dev01"],
}
FRAME_S = 0.1
"""OpenAI clients send 24 kHz PCM16 in frames of about 100 ms."""


def read_uem(path: Path) -> dict[str, tuple[float, float]]:
    regions = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4:
            regions[parts[0]] = (float(parts[2]), float(parts[3]))
    return regions


def stream_of(names: list[str]) -> tuple[np.ndarray, list[SpeakerTurn], list[tuple[float, float]]]:
    """The files back to back, their reference turns shifted, the scored regions."""
    data = testdata_dir() / "pyannote"
    uem = read_uem(data / "debug.development.uem")
    audio, turns, regions, offset = [], [], [], 0.0
    for name in names:
        clip = decode_audio_bytes((data / f"{name}.wav").read_bytes())
        duration = clip.shape[0] / SAMPLE_RATE
        rttm = data / ("sample.rttm" if name == "sample" else "debug.development.rttm")
        for turn in read_rttm(rttm, name)[name]:
            turns.append(SpeakerTurn(offset + turn.start, offset + turn.end, turn.speaker))
        start, end = uem.get(name, (0.0, duration))
        regions.append((offset + start, offset + end))
        audio.append(clip)
        offset += duration
    return np.concatenate(audio), turns, regions


def score(
    reference: list[SpeakerTurn], hypothesis: list[SpeakerTurn], regions: list[tuple[float, float]]
) -> float:
    """DER over the scored regions (each file's uem), collar 0."""
    from pyannote.core import Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    from tools.scoring import to_annotation

    if len(regions) == 1:
        return diarization_error_rate(reference, hypothesis, regions[0])
    metric = DiarizationErrorRate(collar=0.0, skip_overlap=False)
    uem = Timeline([Segment(*region) for region in regions])
    return float(metric(to_annotation(reference), to_annotation(hypothesis), uem=uem))


def live_segments(audio: np.ndarray, whisper, diarizer, realtime_pace: bool) -> tuple[list, int]:
    """The session's ``.segment`` events and its item count."""
    one_at_a_time = threading.Lock()

    def decode(piece, options):
        with one_at_a_time:
            return whisper.transcribe([piece], options)[0].segments

    async def transcribe(piece, options):
        return await asyncio.to_thread(decode, piece, options)

    async def embed(piece):
        return await asyncio.to_thread(diarizer.embed, piece)

    events: list[dict] = []

    async def emit(event: dict) -> None:
        events.append(event)

    async def run() -> None:
        session = realtime.RealtimeTranscriptionSession(transcribe, emit, embed)
        await session.start()
        diarized = {"type": "transcription", "enable_speaker_diarization": True}
        await session.handle_event({"type": "session.update", "session": diarized})
        pcm = (
            (np.clip(soxr.resample(audio, SAMPLE_RATE, 24_000), -1, 1) * 32767)
            .astype("<i2")
            .tobytes()
        )
        step = int(FRAME_S * 24_000) * 2
        started = time.perf_counter()
        for index, offset in enumerate(range(0, len(pcm), step)):
            await session.append_pcm16(pcm[offset : offset + step])
            due = started + (index + 1) * FRAME_S - time.perf_counter()
            await asyncio.sleep(max(0.0, due) if realtime_pace else 0)
        await session.close()

    asyncio.run(run())
    segments = [e for e in events if e["type"].endswith(".segment")]
    return segments, sum(e["type"].endswith(".completed") for e in events)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--realtime", action="store_true", help="send frames at real time")
    parser.add_argument("--streams", nargs="+", choices=list(STREAMS), default=list(STREAMS))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from speakerscribe.diarization.diarizer import load_diarizer
    from speakerscribe.whisper.decoding import BatchTranscriber
    from speakerscribe.whisper.loading import load_whisper_model

    whisper = BatchTranscriber(load_whisper_model("bundled", device="cpu"))
    diarizer = load_diarizer("bundled")
    pace = "real time" if args.realtime else "as fast as the session takes them"
    print(
        f"live speakers, frames {pace}; SpeakerTracker: join {realtime.DEFAULT_SPEAKER_THRESHOLD}"
        f", new speaker below {realtime.NEW_SPEAKER_THRESHOLD} (or pending voice confirmed at "
        f"{realtime.CONFIRM_SPEAKER_THRESHOLD}), merge "
        f"{realtime.MERGE_THRESHOLD}, {realtime.MAX_SUBCENTROIDS} sub-centroids, new speakers "
        f"from {realtime.MIN_NEW_SPEAKER_S:g} s\n"
    )
    print(f"{'stream':<13} {'items':>5} {'speakers':>8} {'true':>4} {'DER':>6}")
    for stream in args.streams:
        audio, reference, regions = stream_of(STREAMS[stream])
        segments, items = live_segments(audio, whisper, diarizer, args.realtime)
        hypothesis = [SpeakerTurn(s["start"], s["end"], s["speaker"]) for s in segments]
        found = len({s["speaker"] for s in segments})
        true = len({t.speaker for t in reference})
        der = score(reference, hypothesis, regions)
        print(f"{stream:<13} {items:>5} {found:>8} {true:>4} {der:>6.3f}", flush=True)
    command = "python load/evaluate_live_speakers.py" + (" --realtime" if args.realtime else "")
    if args.streams != list(STREAMS):
        command += " --streams " + " ".join(args.streams)
    print(f"\ncommand: {command}")


if __name__ == "__main__":
    main()
