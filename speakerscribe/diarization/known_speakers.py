"""Known speakers: enrolled voices (OpenAI's ``known_speaker_references[]``) named in the output.

A reference is a short clip of one person as an audio data URL. After diarization each
anonymous speaker is embedded from its own turns (with the diarizer's embedding model)
and matched one-to-one to the references by cosine similarity (Hungarian assignment);
a speaker takes a name only at or above the threshold, the rest keep A, B, …
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable

import numpy as np
from scipy.optimize import linear_sum_assignment

from speakerscribe.audio import decode_audio_bytes, duration_s
from speakerscribe.errors import AudioDecodeError, InvalidRequestError
from speakerscribe.types import SAMPLE_RATE, SpeakerTurn

MIN_REFERENCE_S = 2.0
MAX_REFERENCE_S = 10.0
MAX_SPEAKER_AUDIO_S = 60.0
"""A speaker's embedding uses at most this much of its speech: enough for a stable voice."""

_DATA_URL = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w-]+=[^;,]*)*)(?P<b64>;base64)?,", re.I
)

Embed = Callable[[np.ndarray], np.ndarray]


def decode_reference(url: str, index: int) -> np.ndarray:
    """One ``data:audio/…;base64,…`` URL → 16 kHz mono audio of 2 to 10 s (else a 400)."""
    param = f"known_speaker_references[{index}]"
    match = _DATA_URL.match(url.strip())
    if not match or not match.group("b64"):
        raise InvalidRequestError(
            f"{param} must be a base64 audio data URL (data:audio/wav;base64,…)", param=param
        )
    mime = (match.group("mime") or "").lower()
    if mime and not mime.startswith(("audio/", "video/", "application/octet-stream")):
        raise InvalidRequestError(f"{param} has media type {mime!r}, not audio", param=param)
    try:
        data = base64.b64decode(url.strip()[match.end() :], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(f"{param} is not valid base64", param=param) from None
    try:
        audio = decode_audio_bytes(data, max_duration_s=MAX_REFERENCE_S + 1.0)
    except AudioDecodeError as error:
        raise InvalidRequestError(f"{param}: {error.message}", param=param) from None
    except InvalidRequestError:  # over the decode limit
        raise InvalidRequestError(
            f"{param} must be {MIN_REFERENCE_S:g} to {MAX_REFERENCE_S:g} s long", param=param
        ) from None
    seconds = duration_s(audio)
    if not MIN_REFERENCE_S - 0.05 <= seconds <= MAX_REFERENCE_S + 0.05:
        raise InvalidRequestError(
            f"{param} is {seconds:.2f} s long; references must be {MIN_REFERENCE_S:g} to "
            f"{MAX_REFERENCE_S:g} s",
            param=param,
        )
    return audio


def speaker_audio(audio: np.ndarray, turns: list[SpeakerTurn], speaker: str) -> np.ndarray:
    """The speaker's speech where nobody else talks, up to ``MAX_SPEAKER_AUDIO_S``."""
    others = [t for t in turns if t.speaker != speaker]
    parts, total = [], 0
    limit = int(MAX_SPEAKER_AUDIO_S * SAMPLE_RATE)
    for turn in turns:
        if turn.speaker != speaker:
            continue
        for start, end in _minus(turn.start, turn.end, others):
            part = audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
            parts.append(part[: limit - total])
            total += parts[-1].shape[0]
            if total >= limit:
                return np.concatenate(parts)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def _minus(start: float, end: float, turns: list[SpeakerTurn]) -> list[tuple[float, float]]:
    """``[start, end)`` with every turn cut out of it."""
    spans = [(start, end)]
    for turn in turns:
        cut = []
        for s, e in spans:
            cut += [
                piece
                for piece in ((s, min(e, turn.start)), (max(s, turn.end), e))
                if piece[1] > piece[0]
            ]
        spans = cut
    return spans


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norm) if norm > 0 and np.isfinite(norm) else float("nan")


def identify_speakers(
    audio: np.ndarray,
    turns: list[SpeakerTurn],
    references: dict[str, np.ndarray],
    embed: Embed,
    threshold: float,
    min_speech_s: float = 0.5,
) -> dict[str, tuple[str, float]]:
    """Diarized label → (enrolled name, similarity), for labels that match a reference.

    Matching is one-to-one: two diarized speakers never share a name.
    """
    labels = sorted({t.speaker for t in turns})
    if not labels or not references:
        return {}
    names = list(references)
    enrolled = [embed(references[name]) for name in names]
    similarity = np.full((len(labels), len(names)), -1.0)
    for row, label in enumerate(labels):
        speech = speaker_audio(audio, turns, label)
        if duration_s(speech) < min_speech_s:
            continue
        voice = embed(speech)
        for column, reference in enumerate(enrolled):
            value = cosine(voice, reference)
            similarity[row, column] = value if np.isfinite(value) else -1.0
    rows, columns = linear_sum_assignment(similarity, maximize=True)
    return {
        labels[r]: (names[c], round(float(similarity[r, c]), 3))
        for r, c in zip(rows, columns, strict=True)
        if similarity[r, c] >= threshold
    }


def name_turns(turns: list[SpeakerTurn], names: dict[str, tuple[str, float]]) -> list[SpeakerTurn]:
    """Turns with identified labels replaced by the enrolled names."""
    return [
        SpeakerTurn(t.start, t.end, names[t.speaker][0]) if t.speaker in names else t for t in turns
    ]
