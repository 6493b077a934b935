"""Overlapped-speech detection on pyannote's real test audio, scored through Whisper's words.

For ``dev00``/``dev01`` (AMI meeting excerpts, reference ``debug.development.rttm``) and
``sample`` (2-speaker phone call, ``sample.rttm``) this runs

- the bundled diarizer (its turns' own overlaps, ``overlap_regions``),
- ``OverlapDetector`` on the diarizer's segmentation model (defaults unless overridden),
- the bundled Whisper (tiny.en) with word timestamps,

flags words with ``flag_overlaps`` on the union of both region lists (what the server
does) and prints, per file, in seconds: the reference overlap (where >= 2 reference
speakers talk), the diarizer's turn overlap, the detector's regions, their union and
its part inside the reference, the time covered by flagged words, its part inside the
reference (coverage) and outside it (false alarm). The acceptance figure is the dev
coverage: flagged-word time inside the reference overlap over the reference overlap,
summed over dev00 and dev01 (target >= 0.5). The defaults were tuned on these files.

    python load/evaluate_overlap.py [--testdata ../shared/testdata] [--device cpu]
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

from speakerscribe.diarization.diarizer import load_diarizer, segmentation_model  # noqa: E402
from speakerscribe.diarization.overlap import (  # noqa: E402
    WORD_TOLERANCE_S,
    OverlapDetector,
    flag_overlaps,
    intersect_regions,
    merge_regions,
    overlap_regions,
    regions_duration,
)
from speakerscribe.types import SAMPLE_RATE, Segment, Word  # noqa: E402
from speakerscribe.whisper.loading import load_whisper_model  # noqa: E402
from tools.scoring import read_rttm  # noqa: E402

COMMAND = "python load/evaluate_overlap.py"
FILES = {
    "dev00": "debug.development.rttm",
    "dev01": "debug.development.rttm",
    "sample": "sample.rttm",
}


def load_wav(path: Path) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        raise SystemExit(f"{path}: expected {SAMPLE_RATE} Hz, got {rate}")
    return audio.mean(axis=1)


def whisper_segments(model, audio: np.ndarray) -> list[Segment]:
    """faster-whisper's own long-form transcription, words as ``speakerscribe`` types."""
    raw, _ = model.transcribe(audio, word_timestamps=True, language="en")
    return [
        Segment(
            id=i,
            seek=s.seek,
            start=s.start,
            end=s.end,
            text=s.text,
            words=[Word(w.word, w.start, w.end, w.probability) for w in s.words or []],
        )
        for i, s in enumerate(raw)
    ]


def flagged_spans(segments: list[Segment]) -> list[tuple[float, float]]:
    return merge_regions((w.start, w.end) for s in segments for w in s.words if w.overlap)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--testdata",
        type=Path,
        default=testdata_dir(),
        help="folder holding pyannote/ (default: ../shared/testdata)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=WORD_TOLERANCE_S,
        help="seconds a word may miss a region by and still be flagged",
    )
    parser.add_argument("--onset", type=float, default=None, help="detector onset (and offset)")
    parser.add_argument("--step", type=float, default=None, help="detector chunk step, s")
    parser.add_argument("--quantile", type=float, default=None)
    args = parser.parse_args(argv)
    data = args.testdata / "pyannote"
    if not data.is_dir():
        raise SystemExit(f"no test audio at {data}; pass --testdata")
    warnings.filterwarnings("ignore")

    started = time.perf_counter()
    diarizer = load_diarizer("bundled", device=args.device)
    overrides = {
        key: value
        for key, value in (
            ("step", args.step),
            ("quantile", args.quantile),
            ("onset", args.onset),
            ("offset", args.onset),
        )
        if value is not None
    }
    detector = OverlapDetector(segmentation_model(diarizer), args.device, **overrides)
    whisper = load_whisper_model("bundled", device=args.device)
    print(
        f"models loaded in {time.perf_counter() - started:.1f} s (device {args.device}); "
        f"detector step {detector.step} quantile {detector.quantile} onset {detector.onset} "
        f"offset {detector.offset} min_on {detector.min_duration_on}; "
        f"word tolerance {args.tolerance} s"
    )
    print(
        f"{'file':7} {'ref':>5} {'turns':>5} {'det':>5} {'union':>5} {'u&ref':>5} "
        f"{'words':>5} {'w&ref':>5} {'w-ref':>5} {'cover':>5} {'det s':>5}"
    )
    covered = reference = 0.0
    for uri, rttm in FILES.items():
        audio = load_wav(data / f"{uri}.wav")
        truth = overlap_regions(read_rttm(data / rttm, uri)[uri])
        turns_overlap = overlap_regions(diarizer(audio))
        tick = time.perf_counter()
        detected = detector(audio)
        detect_s = time.perf_counter() - tick
        union = merge_regions([*turns_overlap, *detected])
        segments = flag_overlaps(whisper_segments(whisper, audio), union, tolerance=args.tolerance)
        flagged = flagged_spans(segments)
        hit = regions_duration(intersect_regions(flagged, truth))
        ref_s = regions_duration(truth)
        print(
            f"{uri:7} {ref_s:5.2f} {regions_duration(turns_overlap):5.2f} "
            f"{regions_duration(detected):5.2f} {regions_duration(union):5.2f} "
            f"{regions_duration(intersect_regions(union, truth)):5.2f} "
            f"{regions_duration(flagged):5.2f} {hit:5.2f} "
            f"{regions_duration(flagged) - hit:5.2f} {hit / ref_s if ref_s else 0.0:5.2f} "
            f"{detect_s:5.2f}"
        )
        if uri != "sample":
            covered, reference = covered + hit, reference + ref_s
    print(
        "columns: seconds of reference overlap, diarizer turn overlap, detector regions, "
        "their union, union inside reference; flagged-word time, inside reference, "
        "outside reference (false alarm), coverage = inside / reference; detector time"
    )
    print(
        f"dev coverage (dev00+dev01 summed) {covered:.2f} / {reference:.2f} s = "
        f"{covered / reference:.2f} (target >= 0.5)"
    )
    print(f"reproduce: {COMMAND}")


if __name__ == "__main__":
    main()
