"""The two ends of the fan-out: a track cut into the pieces Whisper decodes, and the
decoded pieces merged with the speakers into one result."""

from __future__ import annotations

import numpy as np

from speakerscribe.alignment import attribute_speakers, merge_channels, trim_to_sound
from speakerscribe.audio import duration_s
from speakerscribe.chunking import Piece, split_audio, split_utterances
from speakerscribe.diarization.overlap import flag_overlaps
from speakerscribe.formats import TranscriptionResult
from speakerscribe.loudness import sounding_frames
from speakerscribe.pipeline.prepared import PreparedAudio
from speakerscribe.protocol import ServerVadChunking
from speakerscribe.settings import Settings
from speakerscribe.types import Diarization, Segment


def plan_pieces(
    settings: Settings, audio: np.ndarray, strategy: ServerVadChunking | str | None = None
) -> list[Piece]:
    """Default and ``auto``: ≤ 30 s pieces cut at pauses, tiling the audio;
    ``server_vad``: one piece per utterance, with the client's VAD settings."""
    if isinstance(strategy, ServerVadChunking):
        return split_utterances(
            audio,
            threshold=strategy.threshold,
            prefix_padding_ms=strategy.prefix_padding_ms,
            silence_duration_ms=strategy.silence_duration_ms,
            max_piece_s=settings.max_piece_s,
        )
    return split_audio(
        audio,
        max_piece_s=settings.max_piece_s,
        search_window_s=settings.cut_search_window_s,
    )


def assemble_result(
    prepared: PreparedAudio,
    track_segments: list[list[Segment]],
    diarization: Diarization,
) -> TranscriptionResult:
    multichannel = prepared.request.multichannel
    with prepared.clock.measure("merge"):
        sounding = [sounding_frames(track) for track in prepared.tracks]
        if multichannel:
            for segments, heard in zip(track_segments, sounding, strict=True):
                trim_to_sound(segments, heard)
            segments = merge_channels(track_segments)
        elif prepared.runs_diarizer:
            names = set(prepared.diarization.known_speakers)
            segments = attribute_speakers(
                track_segments[0], diarization.turns, keep=names, sounding=sounding[0]
            )
        else:
            segments = track_segments[0]
            trim_to_sound(segments, sounding[0])
        if prepared.diarization.detect_overlap:
            flag_overlaps(segments, diarization.overlaps)
    return TranscriptionResult(
        duration=duration_s(prepared.tracks[0]),
        language=prepared.options.language or "en",
        segments=segments,
        task=prepared.options.task,
        diarized=prepared.diarize or multichannel,
        stage_seconds=prepared.clock.seconds,
        logprobs=prepared.options.logprobs,
        overlap=prepared.diarization.detect_overlap,
        identified=diarization.identified,
    )
