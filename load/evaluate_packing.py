"""What packing short pieces into shared 30 s windows does to the words, against decoding alone.

Draws batches of pieces the way a busy server sees them: whole short clips (jfk, hotwords,
the speechbrain sentences, stereo_diarization), the pieces the ingress cuts from the
meeting clips, and random 2-12 s slices of those (live partials), duplicates allowed (many
users, one file). Each piece is decoded alone once; each batch is decoded packed. It prints,
over all pieces: WER of the packed text against the alone text, pieces whose text changed
or got worse than 25 % WER, inserted words that belong to another piece of the same window
(from another recording: a leak between requests), and the in-process decode time of both ways.

    python load/evaluate_packing.py [--batches 24] [--batch-size 12] [--beam-size 5]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from _server import testdata_dir  # noqa: E402

from speakerscribe.audio import decode_audio_bytes  # noqa: E402
from speakerscribe.chunking import plan_pieces, speech_intervals  # noqa: E402
from speakerscribe.types import SAMPLE_RATE  # noqa: E402
from speakerscribe.whisper.decoding import BatchTranscriber  # noqa: E402
from speakerscribe.whisper.loading import load_whisper_model  # noqa: E402
from speakerscribe.whisper.options import DecodeOptions  # noqa: E402
from tools.scoring import normalize_text, word_error_rate  # noqa: E402

SHORT = [
    "faster-whisper/jfk.flac",
    "faster-whisper/hotwords.mp3",
    "faster-whisper/stereo_diarization.wav",
    *[f"speechbrain/spk{s}_snt{n}.wav" for s in (1, 2) for n in (1, 2, 3)],
]
LONG = ["pyannote/sample.wav", "pyannote/dev00.wav", "pyannote/dev01.wav"]


def piece_pool(seed: int, slices: int) -> list[tuple[str, np.ndarray]]:
    data = testdata_dir()
    pool = [(name.split("/")[-1], decode_audio_bytes((data / name).read_bytes())) for name in SHORT]
    rng = random.Random(seed)
    for name in LONG:
        audio = decode_audio_bytes((data / name).read_bytes())
        label = name.split("/")[-1]
        for piece in plan_pieces(audio.shape[0], speech_intervals(audio)):
            if piece.has_speech:
                pool.append(
                    (
                        f"{label}[{piece.offset_s:.0f}:{piece.offset_s + piece.duration_s:.0f}]",
                        audio[piece.start : piece.end],
                    )
                )
        for _ in range(slices):
            length = rng.uniform(2.0, 12.0)
            start = rng.uniform(0.0, audio.shape[0] / SAMPLE_RATE - length)
            cut = audio[int(start * SAMPLE_RATE) : int((start + length) * SAMPLE_RATE)]
            pool.append((f"{label}[{start:.1f}+{length:.1f}]", cut))
    return pool


def source(name: str) -> str:
    """The recording a piece was cut from: ``dev00.wav[5.5+8.2]`` → ``dev00.wav``."""
    return name.split("[")[0]


def text_of(transcript) -> str:
    return "".join(segment.text for segment in transcript.segments)


def long_words(text: str) -> Counter:
    return Counter(word for word in normalize_text(text).split() if len(word) > 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--slices", type=int, default=6, help="random slices per meeting clip")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    pool = piece_pool(args.seed, args.slices)
    model = load_whisper_model("bundled", device="cpu")
    alone_decoder = BatchTranscriber(model)
    packer = BatchTranscriber(model, pack_short_pieces=True)
    options = DecodeOptions(language="en", beam_size=args.beam_size)
    alone_decoder.transcribe([pool[0][1]], options)  # warm-up

    alone_text: dict[int, str] = {}
    alone_seconds = 0.0
    for index, (_, audio) in enumerate(pool):
        started = time.perf_counter()
        alone_text[index] = text_of(alone_decoder.transcribe([audio], options)[0])
        alone_seconds += time.perf_counter() - started
    alone_per_piece = alone_seconds / len(pool)

    rng = random.Random(args.seed + 1)
    wers, changed, bad, leaked, inserted = [], 0, [], 0, 0
    packed_seconds = alone_equivalent = 0.0
    for _ in range(args.batches):
        batch = [rng.randrange(len(pool)) for _ in range(args.batch_size)]
        started = time.perf_counter()
        packed = packer.transcribe([pool[i][1] for i in batch], options)
        packed_seconds += time.perf_counter() - started
        alone_equivalent += alone_per_piece * len(batch)
        for index, transcript in zip(batch, packed, strict=True):
            reference, hypothesis = alone_text[index], text_of(transcript)
            if not normalize_text(reference):
                continue
            wer = word_error_rate(reference, hypothesis)
            wers.append(wer)
            changed += normalize_text(reference) != normalize_text(hypothesis)
            if wer > 0.25:
                bad.append((pool[index][0], reference.strip(), hypothesis.strip()))
            extra = long_words(hypothesis) - long_words(reference)
            inserted += sum(extra.values())
            others = Counter()  # words of other recordings in this batch
            for other in batch:
                if source(pool[other][0]) != source(pool[index][0]):
                    others |= long_words(alone_text[other])
            leaked += sum((extra & (others - long_words(reference))).values())

    pieces = len(wers)
    print(
        f"pool: {len(pool)} pieces; {args.batches} batches of {args.batch_size}, beam "
        f"{args.beam_size}"
    )
    print(f"pieces scored:                    {pieces}")
    print(f"mean WER, packed against alone:   {np.mean(wers):.3f}")
    print(f"pieces whose text changed:        {changed} ({changed / pieces:.0%})")
    print(f"pieces over 25 % WER:             {len(bad)} ({len(bad) / pieces:.0%})")
    print(f"inserted words (> 3 letters):     {inserted}")
    print(f"  found only in another recording of the batch: {leaked}")
    print(
        f"decode time: alone {alone_equivalent:.1f} s, packed {packed_seconds:.1f} s "
        f"({alone_equivalent / packed_seconds:.2f}x)"
    )
    for name, reference, hypothesis in bad[:12]:
        print(f"  {name}: alone {reference!r}\n  {' ' * len(name)}  packed {hypothesis!r}")
    print(
        f"\ncommand: python load/evaluate_packing.py --batches {args.batches} --batch-size "
        f"{args.batch_size} --beam-size {args.beam_size} --slices {args.slices} --seed {args.seed}"
    )


if __name__ == "__main__":
    main()
