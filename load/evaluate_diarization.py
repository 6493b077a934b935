"""Diarization error rate of the bundled diarizer on every file in ../shared/testdata.

Two views of the same audio:

- **raw turns**: the diarizer in-process, as pyannote pipelines are scored;
- **transcript segments** (``--server``): what users get, ``diarized_json`` segments from
  the running application through the official ``openai`` client.

DER (pyannote.metrics, overlapped speech scored) per file, per group and in total, with
the speakers found against the true count. The collar is 0 for the pyannote, AMI and
LibriSpeech references (word- or sample-exact turns) and 0.25 s for the coarse ones
(``paa_example`` and ``falcon_test``: 0.1 s resolution). ``--sensitivity`` re-scores raw
turns with each tuned value moved by ±20%, so a value that only works in a narrow window
shows; it does the same for the values that shape transcript segments (the word-to-speaker
values of ``speakerscribe.alignment``, and ``loudness.SILENCE_UNDER_LEVEL_DB``),
on transcript segments from the transcription service run in this process (no Ray;
the same code as the server, so its figures at the defaults match ``--server``).
Single-speaker recordings (jfk.flac, the speechbrain clips) are checked for
"one speaker". ``--quieter`` re-scores raw turns with every file 10 to 40 dB quieter,
and prints how much of each file's speech Silero VAD (the chunker's) still hears.

    python load/evaluate_diarization.py [--server] [--sensitivity] [--quieter] [--testdata DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import hashlib
import io
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from _server import testdata_dir  # noqa: E402
from pyannote.core import Annotation, Segment, Timeline  # noqa: E402
from pyannote.database.util import load_rttm, load_uem  # noqa: E402
from pyannote.metrics.diarization import DiarizationErrorRate  # noqa: E402

from speakerscribe import alignment, loudness  # noqa: E402
from speakerscribe.audio import decode_audio_bytes  # noqa: E402
from speakerscribe.diarization.bundled import DEFAULT_PARAMETERS  # noqa: E402
from speakerscribe.diarization.diarizer import diarize_request, load_diarizer  # noqa: E402
from speakerscribe.types import SAMPLE_RATE  # noqa: E402

COMMAND = "python load/evaluate_diarization.py"
PORT = 8131


@dataclass
class DevFile:
    uri: str
    wav: str
    rttm: str
    collar: float
    group: str
    uem: str | None = None


DEV_FILES = [
    DevFile("sample", "pyannote/sample.wav", "pyannote/sample.rttm", 0.0, "sample"),
    DevFile(
        "dev00",
        "pyannote/dev00.wav",
        "pyannote/debug.development.rttm",
        0.0,
        "dev",
        "pyannote/debug.development.uem",
    ),
    DevFile(
        "dev01",
        "pyannote/dev01.wav",
        "pyannote/debug.development.rttm",
        0.0,
        "dev",
        "pyannote/debug.development.uem",
    ),
    DevFile(
        "EN2002a_30s", "diarization/EN2002a_30s.wav", "diarization/EN2002a_30s.rttm", 0.0, "dev2"
    ),
    DevFile(
        "paa_example", "diarization/paa_example.wav", "diarization/paa_example.rttm", 0.25, "dev2"
    ),
    DevFile(
        "falcon_test", "diarization/falcon_test.wav", "diarization/falcon_test.rttm", 0.25, "dev2"
    ),
    DevFile("libri_6spk", "diarization/libri_6spk.wav", "diarization/libri_6spk.rttm", 0.0, "dev3"),
    DevFile("libri_9spk", "diarization/libri_9spk.wav", "diarization/libri_9spk.rttm", 0.0, "dev3"),
]
SINGLE_SPEAKER = [
    "faster-whisper/jfk.flac",
    *(f"speechbrain/spk{s}_snt{n}.wav" for s in (1, 2) for n in (1, 2, 3)),
]
TUNED = {  # pipeline parameter path → default, for the ±20% check
    (section, name): value
    for section, values in DEFAULT_PARAMETERS.items()
    for name, value in values.items()
}

SEGMENT_VALUES = (
    (alignment, "COVERED_FRACTION"),
    (alignment, "BACKCHANNEL_MAX_S"),
    (alignment, "BACKCHANNEL_RATIO"),
    (loudness, "SILENCE_UNDER_LEVEL_DB"),
)
"""The values that shape transcript segments (``speakerscribe.alignment``'s word-to-speaker
values, and how far under the speech level silence starts), for the ±20% check."""


class InProcessStages:
    """The model stages in this process, each answer kept: transcript segments can then
    be assembled again with other word-to-speaker values without decoding again."""

    def __init__(self, settings, diarizer):
        from speakerscribe.whisper.decoding import BatchTranscriber
        from speakerscribe.whisper.loading import load_whisper_model

        self.settings = settings
        self.transcriber = BatchTranscriber(
            load_whisper_model(settings.whisper_model), pack_short_pieces=settings.pack_short_pieces
        )
        self.diarizer = diarizer
        self.answers: dict[tuple, object] = {}

    def _kept(self, key: tuple, compute):
        if key not in self.answers:
            self.answers[key] = compute()
        return copy.deepcopy(self.answers[key])

    async def separate(self, audio: np.ndarray) -> np.ndarray:
        return audio

    async def detect_language(self, audio: np.ndarray, model: str) -> str:
        return "en"

    async def transcribe(self, piece: np.ndarray, options):
        key = ("transcribe", hashlib.sha1(piece.tobytes()).hexdigest(), repr(options))
        return self._kept(key, lambda: self._decoded(piece, options))

    def _decoded(self, piece: np.ndarray, options):
        (transcript,) = self.transcriber.transcribe([piece], options)
        if isinstance(transcript, Exception):  # the batch reports each piece's own failure
            raise transcript
        return transcript.segments

    async def diarize(self, audio: np.ndarray, options):
        key = ("diarize", hashlib.sha1(audio.tobytes()).hexdigest(), repr(options))
        return self._kept(
            key,
            lambda: diarize_request(
                self.diarizer,
                audio,
                options,
                known_speaker_threshold=self.settings.known_speaker_threshold,
            ),
        )


def in_process_turns(service, path: Path):
    """``diarized_json`` segments as the server builds them, from ``service``."""
    from speakerscribe.protocol import TranscriptionRequest

    request = TranscriptionRequest(
        model="gpt-4o-transcribe-diarize",
        response_format="diarized_json",
        chunking_strategy="auto",
    )
    result = asyncio.run(service.transcribe(path.read_bytes(), request))
    return [(s.start, s.end, s.speaker) for s in result.segments]


def load_wav(path: Path) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        return decode_audio_bytes(path.read_bytes())
    return audio.mean(axis=1)


def turns_annotation(turns, uri: str) -> Annotation:
    annotation = Annotation(uri=uri)
    for index, (start, end, speaker) in enumerate(turns):
        if end > start:
            annotation[Segment(start, end), index] = speaker
    return annotation


def score(file: DevFile, reference: Annotation, uem: Timeline, turns) -> dict[str, float]:
    metric = DiarizationErrorRate(collar=file.collar, skip_overlap=False)
    parts = metric(reference, turns_annotation(turns, file.uri), uem=uem, detailed=True)
    total = parts["total"] or 1.0
    return {
        "der": parts["diarization error rate"],
        "miss": parts["missed detection"] / total,
        "fa": parts["false alarm"] / total,
        "conf": parts["confusion"] / total,
        "found": len({speaker for _, _, speaker in turns}),
        "true": len(reference.labels()),
    }


def onset_lag(reference: Annotation, turns) -> float:
    """Median seconds from a reference turn's start to the nearest hypothesis start (±1 s).

    Near zero where both mark the first word; LibriSpeech's turns keep each utterance's
    leading silence, so there a detector that starts at the voice is late by that much.
    """
    starts = np.array([start for start, _, _ in turns])
    if not len(starts):
        return float("nan")
    lags = [
        starts[np.argmin(np.abs(starts - segment.start))] - segment.start
        for segment in reference.get_timeline()
    ]
    near = [lag for lag in lags if abs(lag) <= 1.0]
    return float(np.median(near)) if near else float("nan")


def report(title: str, rows: dict[str, dict[str, float]], groups: dict[str, str]) -> float:
    print(f"\n{title}")
    print(f"{'file':12} {'group':6} {'DER':>6} {'miss':>6} {'FA':>6} {'conf':>6} {'spk':>7}")
    for uri, row in rows.items():
        print(
            f"{uri:12} {groups[uri]:6} {row['der']:6.3f} {row['miss']:6.3f} {row['fa']:6.3f} "
            f"{row['conf']:6.3f} {row['found']:3d}/{row['true']:<3d}"
        )
    by_group: dict[str, list[float]] = {}
    for uri, row in rows.items():
        by_group.setdefault(groups[uri], []).append(row["der"])
    mean = float(np.mean([row["der"] for row in rows.values()]))
    right = sum(row["found"] == row["true"] for row in rows.values())
    print(
        "mean DER  "
        + "  ".join(f"{group} {np.mean(values):.3f}" for group, values in by_group.items())
        + f"  | all {mean:.3f} | speaker count right on {right}/{len(rows)}"
    )
    return mean


def raw_turns(diarizer, audio: np.ndarray):
    return [(t.start, t.end, t.speaker) for t in diarizer(audio)]


def server_turns(base: str, path: Path):
    from openai import OpenAI

    client = OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=600)
    with path.open("rb") as audio:
        answer = client.audio.transcriptions.create(
            model="gpt-4o-transcribe-diarize",
            file=(path.name, io.BytesIO(audio.read())),
            response_format="diarized_json",
            chunking_strategy="auto",
        )
    segments = answer.model_dump()["segments"]
    return [(s["start"], s["end"], s["speaker"]) for s in segments]


def set_parameter(diarizer, path: tuple[str, str], value: float) -> None:
    section, name = path
    params = diarizer.pipeline.parameters(instantiated=True)
    params[section][name] = value
    diarizer.pipeline.instantiate(params)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--testdata", type=Path, default=testdata_dir())
    parser.add_argument("--server", action="store_true", help="also score transcript segments")
    parser.add_argument("--sensitivity", action="store_true", help="re-score at ±20%%")
    parser.add_argument("--quieter", action="store_true", help="re-score 10 to 40 dB down")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    data = args.testdata

    started = time.perf_counter()
    diarizer = load_diarizer("bundled", device=args.device)
    print(f"bundled diarizer loaded in {time.perf_counter() - started:.1f} s")

    audio, references, uems = {}, {}, {}
    for file in DEV_FILES:
        audio[file.uri] = load_wav(data / file.wav)
        references[file.uri] = load_rttm(data / file.rttm)[file.uri]
        duration = len(audio[file.uri]) / SAMPLE_RATE
        uems[file.uri] = (
            load_uem(data / file.uem)[file.uri]
            if file.uem
            else Timeline([Segment(0.0, duration)], uri=file.uri)
        )
    groups = {file.uri: file.group for file in DEV_FILES}

    rows, lags, seconds = {}, {}, 0.0
    for file in DEV_FILES:
        began = time.perf_counter()
        turns = raw_turns(diarizer, audio[file.uri])
        seconds += time.perf_counter() - began
        rows[file.uri] = score(file, references[file.uri], uems[file.uri], turns)
        lags[file.uri] = onset_lag(references[file.uri], turns)
    report("raw turns (in-process)", rows, groups)
    print("median onset lag, hypothesis turn start minus reference turn start (s):")
    print("  " + "  ".join(f"{uri} {lag:+.2f}" for uri, lag in lags.items()))
    total_audio = sum(len(samples) for samples in audio.values()) / SAMPLE_RATE
    print(
        f"diarization wall time {seconds:.1f} s for {total_audio:.0f} s of audio: "
        f"{30 * seconds / total_audio:.2f} s per 30 s"
    )

    print("\nsingle-speaker recordings (speakers found, want 1):")
    for name in SINGLE_SPEAKER:
        found = len({speaker for _, _, speaker in raw_turns(diarizer, load_wav(data / name))})
        print(f"  {name:32} {found}")

    if args.sensitivity:
        print("\n±20% around each tuned value (raw turns, mean DER over all files, counts right)")
        knobs = [
            (".".join(path), tuned, lambda value, path=path: set_parameter(diarizer, path, value))
            for path, tuned in TUNED.items()
        ]
        knobs.append(
            (
                "loudness.MIN_SPEECH_LEVEL_DB",
                loudness.MIN_SPEECH_LEVEL_DB,
                lambda value: setattr(loudness, "MIN_SPEECH_LEVEL_DB", value),
            )
        )
        for label, tuned, set_value in knobs:
            cells = []
            for factor in (0.8, 1.0, 1.2):
                value = min(1.0, tuned * factor)
                set_value(value)
                scored = {
                    file.uri: score(
                        file,
                        references[file.uri],
                        uems[file.uri],
                        raw_turns(diarizer, audio[file.uri]),
                    )
                    for file in DEV_FILES
                }
                mean = np.mean([row["der"] for row in scored.values()])
                right = sum(row["found"] == row["true"] for row in scored.values())
                cells.append(f"{value:.2f}: DER {mean:.3f}, {right}/{len(scored)}")
                per_file = " ".join(f"{row['der']:.2f}" for row in scored.values())
                cells[-1] += f" [{per_file}]"
            set_value(tuned)
            print(f"  {label:44}\n    " + "\n    ".join(cells))
        segment_sensitivity(diarizer, data, references, uems)

    if args.quieter:
        quieter_recordings(diarizer, audio, references, uems)

    if args.server:
        from _server import running_app

        with running_app(PORT, enable_speaker_diarization=True) as base:
            rows = {
                file.uri: score(
                    file,
                    references[file.uri],
                    uems[file.uri],
                    server_turns(base, data / file.wav),
                )
                for file in DEV_FILES
            }
        report("transcript segments (diarized_json through the server)", rows, groups)
    flags = [
        flag
        for flag, on in (
            ("--server", args.server),
            ("--sensitivity", args.sensitivity),
            ("--quieter", args.quieter),
        )
        if on
    ]
    print(f"\nreproduce: {' '.join([COMMAND, *flags])}")


QUIETER_DB = (0, -10, -20, -26, -40)
"""How much quieter than recorded each file is scored (a far-field or low-gain capture)."""


def quieter_recordings(diarizer, audio, references, uems) -> None:
    from speakerscribe.chunking import speech_intervals

    def heard_s(samples: np.ndarray) -> float:
        return sum(end - start for start, end in speech_intervals(samples)) / SAMPLE_RATE

    print(
        "\nquieter recordings (every file scaled; raw turns: mean DER, counts right, DER per "
        "file; VAD: speech Silero hears, over what it hears in the files as recorded)"
    )
    recorded = sum(heard_s(samples) for samples in audio.values())
    for down_db in QUIETER_DB:
        gain = np.float32(10.0 ** (down_db / 20.0))
        scored = [
            score(
                file,
                references[file.uri],
                uems[file.uri],
                raw_turns(diarizer, audio[file.uri] * gain),
            )
            for file in DEV_FILES
        ]
        heard = sum(heard_s(samples * gain) for samples in audio.values())
        right = sum(row["found"] == row["true"] for row in scored)
        per_file = " ".join(f"{row['der']:.2f}({row['found']})" for row in scored)
        print(
            f"  {down_db:+3d} dB: DER {np.mean([row['der'] for row in scored]):.3f}, "
            f"{right}/{len(scored)}, VAD {heard / recorded:.2f}  [{per_file}]"
        )


def segment_sensitivity(diarizer, data: Path, references, uems) -> None:
    from speakerscribe.pipeline.service import TranscriptionService
    from speakerscribe.settings import load_settings

    settings = load_settings(enable_speaker_diarization=True)
    service = TranscriptionService(settings, InProcessStages(settings, diarizer))
    print(
        "\n±20% around each value that shapes transcript segments (in-process, "
        "mean DER over all files, counts right)"
    )
    for module, name in SEGMENT_VALUES:
        tuned = getattr(module, name)
        cells = []
        for factor in (0.8, 1.0, 1.2):
            setattr(module, name, tuned * factor)
            scored = [
                score(
                    file,
                    references[file.uri],
                    uems[file.uri],
                    in_process_turns(service, data / file.wav),
                )
                for file in DEV_FILES
            ]
            right = sum(row["found"] == row["true"] for row in scored)
            per_file = " ".join(f"{row['der']:.2f}" for row in scored)
            mean = np.mean([row["der"] for row in scored])
            cells.append(
                f"{tuned * factor:.2f}: DER {mean:.3f}, {right}/{len(scored)} [{per_file}]"
            )
        setattr(module, name, tuned)
        where = module.__name__.rsplit(".", 1)[-1]
        print(f"  {where}.{name:34}\n    " + "\n    ".join(cells))


if __name__ == "__main__":
    main()
