"""Diarization error rate of the embedded (offline) diarizer on pyannote's real test audio.

Runs ``EmbeddedDiarizer`` with its default (tuned) parameters over

- ``pyannote/sample.wav`` (2-speaker phone call) against ``sample.rttm``, whole file;
- ``pyannote/dev00.wav`` and ``dev01.wav`` (AMI meeting excerpts) against
  ``debug.development.rttm``, inside ``debug.development.uem``;
- the three concatenated (90 s, 4 speakers), the MANIFEST's "longer conversation" case,

and prints DER (collar 0, overlapped speech scored), its parts, the speakers found, and
the time taken. These are the files the defaults were tuned on, so the numbers say
"still as good as when tuned", not how well it generalises.

    python load/evaluate_diarization.py [--testdata ../shared/testdata] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from _server import testdata_dir  # noqa: E402
from pyannote.core import Annotation, Segment, Timeline  # noqa: E402
from pyannote.database.util import load_rttm, load_uem  # noqa: E402
from pyannote.metrics.diarization import DiarizationErrorRate  # noqa: E402

from speakerscribe.diarization import load_diarizer  # noqa: E402
from speakerscribe.scoring import to_annotation  # noqa: E402
from speakerscribe.types import SAMPLE_RATE, SpeakerTurn  # noqa: E402

COMMAND = "python load/evaluate_diarization.py"


def load_wav(path: Path) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        raise SystemExit(f"{path}: expected {SAMPLE_RATE} Hz, got {rate}")
    return audio.mean(axis=1)


def score(reference: Annotation, turns: list[SpeakerTurn], uem: Timeline) -> dict[str, float]:
    metric = DiarizationErrorRate(collar=0.0, skip_overlap=False)
    parts = metric(reference, to_annotation(turns, reference.uri), uem=uem, detailed=True)
    total = parts["total"] or 1.0
    return {
        "der": parts["diarization error rate"],
        "miss": parts["missed detection"] / total,
        "fa": parts["false alarm"] / total,
        "conf": parts["confusion"] / total,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--testdata",
        type=Path,
        default=testdata_dir(),
        help="folder holding pyannote/ (default: ../shared/testdata)",
    )
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    data = args.testdata / "pyannote"
    if not data.is_dir():
        raise SystemExit(f"no test audio at {data}; pass --testdata")
    warnings.filterwarnings("ignore")

    started = time.perf_counter()
    diarizer = load_diarizer("embedded", device=args.device)
    load_s = time.perf_counter() - started

    references = {**load_rttm(data / "sample.rttm"), **load_rttm(data / "debug.development.rttm")}
    uems = load_uem(data / "debug.development.uem")
    audio = {uri: load_wav(data / f"{uri}.wav") for uri in ("sample", "dev00", "dev01")}
    uems["sample"] = Timeline([Segment(0.0, len(audio["sample"]) / SAMPLE_RATE)], uri="sample")

    # the longer conversation: the three files back to back, references shifted
    long_ref, offset = Annotation(uri="long"), 0.0
    for uri, samples in audio.items():
        for segment, _, label in references[uri].itertracks(yield_label=True):
            long_ref[Segment(segment.start + offset, segment.end + offset), len(long_ref)] = label
        offset += len(samples) / SAMPLE_RATE
    audio["long"] = np.concatenate([audio["sample"], audio["dev00"], audio["dev01"]])
    references["long"] = long_ref
    uems["long"] = Timeline([Segment(0.0, offset)], uri="long")

    print(f"embedded diarizer loaded in {load_s:.1f} s (device {args.device})")
    print(
        f"{'file':8} {'audio s':>7} {'time s':>6} {'x RT':>5} {'spk':>3}/{'ref':<3} "
        f"{'DER':>6} {'miss':>6} {'FA':>6} {'conf':>6}"
    )
    results, diarize_s = {}, 0.0
    for uri, samples in audio.items():
        started = time.perf_counter()
        turns = diarizer(samples)
        elapsed = time.perf_counter() - started
        diarize_s += elapsed
        result = score(references[uri], turns, uems[uri])
        results[uri] = result
        duration = len(samples) / SAMPLE_RATE
        found = len({turn.speaker for turn in turns})
        print(
            f"{uri:8} {duration:7.1f} {elapsed:6.2f} {duration / elapsed:5.1f} "
            f"{found:3d}/{len(references[uri].labels()):<3d} {result['der']:6.3f} "
            f"{result['miss']:6.3f} {result['fa']:6.3f} {result['conf']:6.3f}"
        )

    dev_mean = (results["dev00"]["der"] + results["dev01"]["der"]) / 2
    print(f"sample DER {results['sample']['der']:.3f} (target <= 0.15)")
    print(
        f"dev mean DER {dev_mean:.3f} (dev00 {results['dev00']['der']:.3f}, "
        f"dev01 {results['dev01']['der']:.3f}; target <= 0.30)"
    )
    print(f"long (concatenated) DER {results['long']['der']:.3f}")
    total_audio = sum(len(samples) for samples in audio.values()) / SAMPLE_RATE
    print(
        f"diarization time {diarize_s:.1f} s for {total_audio:.0f} s of audio (the three "
        f"files, then their concatenation), plus {load_s:.1f} s loading"
    )
    print(f"reproduce: {COMMAND}")


if __name__ == "__main__":
    main()
