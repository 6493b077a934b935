"""Quality measures shared by tests and benchmarks: Whisper-style WER, DER, reference readers."""

from __future__ import annotations

from pathlib import Path

from speakerscribe.text import normalize_text  # also imported from here by tests, benchmarks
from speakerscribe.types import SpeakerTurn


def word_error_rate(reference: str, hypothesis: str) -> float:
    import jiwer

    return jiwer.wer(normalize_text(reference), normalize_text(hypothesis) or "<empty>")


def read_rttm(path: Path, uri: str | None = None) -> dict[str, list[SpeakerTurn]]:
    """RTTM → turns per file uri (or only ``uri``)."""
    turns: dict[str, list[SpeakerTurn]] = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if not parts or parts[0] != "SPEAKER":
            continue
        file_uri, start, duration, speaker = parts[1], float(parts[3]), float(parts[4]), parts[7]
        if uri is None or file_uri == uri:
            turns.setdefault(file_uri, []).append(SpeakerTurn(start, start + duration, speaker))
    return turns


def read_stm_text(path: Path) -> str:
    """An STM file's words in order: the reference transcript of a whole recording."""
    lines = Path(path).read_text().splitlines()
    return " ".join(" ".join(line.split()[5:]) for line in lines if line.strip())


def to_annotation(turns: list[SpeakerTurn], uri: str = "file"):
    from pyannote.core import Annotation, Segment

    annotation = Annotation(uri=uri)
    for index, turn in enumerate(turns):
        if turn.end > turn.start:
            annotation[Segment(turn.start, turn.end), index] = turn.speaker
    return annotation


def diarization_error_rate(
    reference: list[SpeakerTurn],
    hypothesis: list[SpeakerTurn],
    uem: tuple[float, float] | None = None,
) -> float:
    """DER with collar 0 and overlap scored (pyannote.metrics)."""
    from pyannote.core import Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    metric = DiarizationErrorRate(collar=0.0, skip_overlap=False)
    kwargs = {"uem": Timeline([Segment(*uem)])} if uem else {}
    return float(metric(to_annotation(reference), to_annotation(hypothesis), **kwargs))
