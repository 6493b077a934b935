"""Live transcription latency: end of an utterance → its final event, at 1 and 8 streams.

Starts the application itself and streams a conversation over ``/v1/realtime`` at real
time, as a microphone would, from 1 and then 8 concurrent clients (server VAD,
diarization on). The default conversation is MANIFEST.md's longer one: sample.wav (a
telephone call), dev00.wav and dev01.wav (meetings) back to back, 90 s of two-speaker
speech; ``--clip sample`` streams sample.wav alone (30 s, three finals). For every final
(``...transcription.completed``) the latency is its arrival minus the wall time at which
the utterance's last speech was sent. That speech end is read off the audio itself
(Silero VAD over the whole stream, the last speech end before the item's
``speech_stopped``), so the latency includes the silence the server's VAD waits for
before it commits, as a user would feel it. Every final is waited for (up to a minute),
so a slow one counts rather than drops out; a ``failed`` final is counted apart.
``--streams 1 1 1`` runs three rounds of one stream.

    python load/bench_realtime.py [--streams 1 8] [--speed 1.0] [--clip conversation|sample]
"""

from __future__ import annotations

import argparse
import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import soxr
from _server import running_app, testdata_dir
from websockets.sync.client import connect

RATE = 24_000
FRAME_S = 0.1
SILENCE_MS = 500
FINAL_WAIT_S = 60.0
QUIET_S = 10.0


CLIPS = {
    "conversation": ["pyannote/sample.wav", "pyannote/dev00.wav", "pyannote/dev01.wav"],
    "sample": ["pyannote/sample.wav"],
}


def audio_of(clip: str) -> np.ndarray:
    """The clip's files back to back, 16 kHz."""
    from speakerscribe.audio import decode_audio_bytes

    return np.concatenate(
        [decode_audio_bytes((testdata_dir() / name).read_bytes()) for name in CLIPS[clip]]
    )


def frames_of(audio_16k: np.ndarray) -> list[bytes]:
    audio = soxr.resample(audio_16k, 16_000, RATE)
    audio = np.concatenate(
        [audio, np.zeros(2 * RATE, np.float32)]
    )  # trailing silence ends the last turn
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    step = int(RATE * FRAME_S) * 2
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


def speech_ends(audio: np.ndarray) -> np.ndarray:
    """Seconds where speech ends in the stream, by Silero VAD over all of it."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    spans = get_speech_timestamps(audio, VadOptions(min_silence_duration_ms=SILENCE_MS // 2))
    return np.array([span["end"] / 16_000 for span in spans])


def one_stream(
    url: str, frames: list[bytes], ends: np.ndarray, speed: float
) -> tuple[list[float], int]:
    """Stream at ``speed`` × real time; return each final's latency in seconds, and how
    many items failed."""
    latencies: list[float] = []
    failed: list[str] = []
    speech_end: dict[str, float] = {}  # item_id → stream seconds where speech ended
    started_items: set[str] = set()  # items whose speech_started arrived
    finished: set[str] = set()  # items whose final (completed or failed) arrived
    last_event = [time.monotonic()]
    done = threading.Event()
    with connect(url, open_timeout=120, max_size=None) as socket:
        socket.recv(timeout=120)  # session.created
        update = {
            "type": "session.update",
            "session": {
                "type": "transcription",
                "enable_speaker_diarization": True,
                "audio": {
                    "input": {
                        "turn_detection": {"type": "server_vad", "silence_duration_ms": SILENCE_MS}
                    }
                },
            },
        }
        socket.send(json.dumps(update))
        started = time.monotonic()

        def receive() -> None:
            while not done.is_set():
                try:
                    event = json.loads(socket.recv(timeout=1))
                except TimeoutError:
                    continue
                except Exception:
                    return
                now = last_event[0] = time.monotonic()
                if event["type"] == "input_audio_buffer.speech_started":
                    started_items.add(event["item_id"])
                elif event["type"] == "input_audio_buffer.speech_stopped":
                    stopped = event["audio_end_ms"] / 1000
                    before = ends[ends <= stopped]
                    speech_end[event["item_id"]] = float(before[-1]) if len(before) else stopped
                elif event["type"] == "conversation.item.input_audio_transcription.failed":
                    finished.add(event["item_id"])
                    failed.append(event["item_id"])
                elif event["type"] == "conversation.item.input_audio_transcription.completed":
                    finished.add(event["item_id"])
                    end = speech_end.get(event["item_id"])
                    if end is not None:
                        latencies.append(now - (started + end / speed))

        reader = threading.Thread(target=receive)
        reader.start()
        for index, frame in enumerate(frames):
            socket.send(
                json.dumps(
                    {"type": "input_audio_buffer.append", "audio": base64.b64encode(frame).decode()}
                )
            )
            pause = started + (index + 1) * FRAME_S / speed - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        # every final, however late, is counted: wait while items await their finals or
        # the server still sends (a backlogged one is still working through the stream)
        deadline = time.monotonic() + FINAL_WAIT_S
        while time.monotonic() < deadline and (
            started_items - finished or time.monotonic() - last_event[0] < QUIET_S
        ):
            time.sleep(0.1)
        done.set()
        reader.join()
    return latencies, len(failed)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--speed", type=float, default=1.0, help="× real time")
    parser.add_argument("--clip", choices=sorted(CLIPS), default="conversation")
    parser.add_argument("--port", type=int, default=8128)
    args = parser.parse_args()
    audio = audio_of(args.clip)
    frames, ends = frames_of(audio), speech_ends(audio)
    rows = []
    with running_app(args.port) as base:
        url = base.replace("http://", "ws://") + "/v1/realtime?intent=transcription"
        one_stream(url, frames[:30], ends, 4.0)  # warm-up: load VAD and models, open the paths
        for streams in args.streams:
            with ThreadPoolExecutor(streams) as pool:
                results = list(
                    pool.map(lambda _: one_stream(url, frames, ends, args.speed), range(streams))
                )
            latencies = [x for result, _ in results for x in result]
            failed = sum(count for _, count in results)
            rows.append(
                (
                    streams,
                    len(latencies),
                    failed,
                    percentile(latencies, 50),
                    percentile(latencies, 95),
                    max(latencies, default=float("nan")),
                )
            )
    names = " + ".join(name.split("/")[-1] for name in CLIPS[args.clip])
    print(
        f"\nend of speech → final event, {names} at {args.speed:g}× real time, server VAD "
        f"(silence {SILENCE_MS} ms, included), diarization on"
    )
    print(f"{'streams':>7} {'finals':>6} {'failed':>6} {'p50 s':>6} {'p95 s':>6} {'max s':>6}")
    for streams, count, failed, p50, p95, worst in rows:
        print(f"{streams:>7} {count:>6} {failed:>6} {p50:>6.2f} {p95:>6.2f} {worst:>6.2f}")
    streams = " ".join(str(s) for s in args.streams)
    print(
        f"\ncommand: python load/bench_realtime.py --streams {streams} --speed "
        f"{args.speed:g} --clip {args.clip}"
    )


if __name__ == "__main__":
    main()
