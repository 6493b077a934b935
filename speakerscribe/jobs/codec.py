"""Results and pieces as JSON bytes for the job store (pydantic reads the dataclasses)."""

from __future__ import annotations

from pydantic import TypeAdapter

from speakerscribe.formats import TranscriptionResult
from speakerscribe.types import Segment

_RESULT = TypeAdapter(TranscriptionResult)
_SEGMENTS = TypeAdapter(list[Segment])


def encode_result(result: TranscriptionResult) -> bytes:
    return _RESULT.dump_json(result)


def decode_result(data: bytes) -> TranscriptionResult:
    return _RESULT.validate_json(data)


def encode_segments(segments: list[Segment]) -> bytes:
    return _SEGMENTS.dump_json(segments)


def decode_segments(data: bytes) -> list[Segment]:
    return _SEGMENTS.validate_json(data)
