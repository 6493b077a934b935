"""Text quality of the batch (upload) path on pyannote's sample.wav, through the real server.

Starts the application in-process, sends ``pyannote/sample.wav`` with the official
``openai`` client as ``diarized_json`` (model ``gpt-4o-transcribe-diarize``) and as
``verbose_json`` (``whisper-1``), and scores the text against ``sample.stm``:

- normalised WER: Whisper's English normaliser (lower case, no punctuation, contractions
  spelled out), as Whisper's papers score;
- formatted WER: words as written, case and punctuation kept, only whitespace normalised
  (``Hello?`` against ``hello`` is an error): what a reader sees;
- cpWER (diarized_json only): per speaker, the reference words of each STM speaker and the
  hypothesis words of each diarized speaker are concatenated; the speaker mapping with the
  fewest errors (``scipy.optimize.linear_sum_assignment``) is scored, on normalised words.

    python load/evaluate_transcript.py [--port 8141]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import jiwer  # noqa: E402
import numpy as np  # noqa: E402
from _server import print_table, running_app, testdata_dir  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402

COMMAND = "python load/evaluate_transcript.py"


def _normaliser():
    """Whisper's English normaliser (shipped in transformers), else a plain one."""
    try:
        from transformers.models.whisper.english_normalizer import EnglishTextNormalizer
    except ImportError:
        from tools.scoring import normalize_text

        return normalize_text
    return EnglishTextNormalizer({})


normalise = _normaliser()


def read_stm(path: Path) -> list[tuple[str, str]]:
    """(speaker, text) per utterance, in time order."""
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6:
            rows.append((float(parts[3]), parts[2], parts[5]))
    return [(speaker, text) for _, speaker, text in sorted(rows)]


def errors(reference: str, hypothesis: str) -> int:
    """Substitutions + deletions + insertions between two whitespace-split texts."""
    if not reference.split():
        return len(hypothesis.split())
    if not hypothesis.split():
        return len(reference.split())
    out = jiwer.process_words(reference, hypothesis)
    return out.substitutions + out.deletions + out.insertions


def wer(reference: str, hypothesis: str) -> float:
    return errors(reference, hypothesis) / max(1, len(reference.split()))


def normalised_wer(reference: str, hypothesis: str) -> float:
    return wer(normalise(reference), normalise(hypothesis))


def formatted_wer(reference: str, hypothesis: str) -> float:
    return wer(" ".join(reference.split()), " ".join(hypothesis.split()))


def cp_wer(reference: dict[str, str], hypothesis: dict[str, str]) -> tuple[float, dict]:
    """Concatenated minimum-permutation WER, and the speaker mapping it chose."""
    refs = {k: normalise(v) for k, v in reference.items()}
    hyps = {k: normalise(v) for k, v in hypothesis.items()}
    ref_names, hyp_names = list(refs), list(hyps)
    size = max(len(ref_names), len(hyp_names))
    cost = np.zeros((size, size), dtype=np.int64)  # padded rows/columns: an empty speaker
    for i in range(size):
        for j in range(size):
            ref = refs[ref_names[i]] if i < len(ref_names) else ""
            hyp = hyps[hyp_names[j]] if j < len(hyp_names) else ""
            cost[i, j] = errors(ref, hyp)
    rows, cols = linear_sum_assignment(cost)
    total = sum(len(text.split()) for text in refs.values())
    mapping = {
        ref_names[i]: hyp_names[j] if j < len(hyp_names) else None
        for i, j in zip(rows, cols, strict=True)
        if i < len(ref_names)
    }
    return float(cost[rows, cols].sum()) / max(1, total), mapping


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8141)
    args = parser.parse_args()

    from openai import OpenAI

    data = testdata_dir() / "pyannote"
    turns = read_stm(data / "sample.stm")
    reference = " ".join(text for _, text in turns)
    by_speaker: dict[str, str] = {}
    for speaker, text in turns:
        by_speaker[speaker] = f"{by_speaker.get(speaker, '')} {text}".strip()
    audio = (data / "sample.wav").read_bytes()

    with running_app(args.port) as base:
        client = OpenAI(base_url=f"{base}/v1", api_key="not-needed", timeout=600, max_retries=0)
        diarized = client.audio.transcriptions.create(
            model="gpt-4o-transcribe-diarize",
            file=("sample.wav", audio),
            response_format="diarized_json",
            chunking_strategy="auto",
        )
        verbose = client.audio.transcriptions.create(
            model="whisper-1", file=("sample.wav", audio), response_format="verbose_json"
        )

    hypothesis: dict[str, str] = {}
    for segment in diarized.segments:
        hypothesis[segment.speaker] = f"{hypothesis.get(segment.speaker, '')} {segment.text}"
    cp, mapping = cp_wer(by_speaker, hypothesis)
    print(f"\nreference: {reference}")
    for name, result in (("diarized_json", diarized), ("verbose_json", verbose)):
        print(f"{name}: {result.text.strip()}")
    rows = [
        ("normalised WER, diarized_json", f"{normalised_wer(reference, diarized.text):.3f}"),
        ("normalised WER, verbose_json", f"{normalised_wer(reference, verbose.text):.3f}"),
        ("formatted WER, diarized_json", f"{formatted_wer(reference, diarized.text):.3f}"),
        ("formatted WER, verbose_json", f"{formatted_wer(reference, verbose.text):.3f}"),
        ("cpWER, diarized_json", f"{cp:.3f}  (speakers {mapping})"),
    ]
    print()
    print_table(rows)
    print(f"normaliser: {getattr(normalise, '__qualname__', type(normalise).__qualname__)}")
    print(f"\ncommand: {COMMAND} --port {args.port}")


if __name__ == "__main__":
    main()
