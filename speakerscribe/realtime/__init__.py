"""Live transcription over OpenAI's Realtime transcription protocol, free of Ray.

Split along the seams of one stream's path, each importing only the modules before it:
``protocol`` (what a client may send and set), ``stream`` (resampler, VAD, buffer,
stable partials), ``speakers`` (online speaker labels), ``turns`` (tuning and per-turn
records), ``decoding`` (commits, decodes, server events), ``session`` (client
events and turn-taking: ``RealtimeTranscriptionSession``, one per WebSocket) and
``connection`` (one WebSocket's messages, limits and stages around a session).
"""

from speakerscribe.realtime.protocol import (
    CONFIG_PARAMS,
    MAX_PREFIX_PADDING_MS,
    MAX_SILENCE_DURATION_MS,
    MIN_COMMIT_MS,
    OPENAI_INPUT_RATE,
    ClientEventError,
    RealtimeSessionConfig,
    ServerVad,
    new_id,
    session_changes,
)
from speakerscribe.realtime.session import RealtimeTranscriptionSession
from speakerscribe.realtime.speakers import (
    CONFIRM_SPEAKER_THRESHOLD,
    DEFAULT_KNOWN_SPEAKER_THRESHOLD,
    DEFAULT_SPEAKER_THRESHOLD,
    MAX_PENDING_VOICES,
    MAX_SUBCENTROIDS,
    MERGE_THRESHOLD,
    MIN_NEW_SPEAKER_S,
    NEW_SPEAKER_THRESHOLD,
    SUBCENTROID_THRESHOLD,
    SpeakerTracker,
)
from speakerscribe.realtime.stream import (
    MANUAL_SPEECH_THRESHOLD,
    VAD_WINDOW,
    WINDOW_MS,
    LocalAgreement,
    StreamingResampler,
    StreamingVad,
    WindowBuffer,
    longest_pause_middle,
)
from speakerscribe.realtime.turns import (
    SENTENCE_ENDS,
    TURN_PAUSE_S,
    SessionTuning,
    sentence_segments,
)

__all__ = [
    "CONFIG_PARAMS",
    "CONFIRM_SPEAKER_THRESHOLD",
    "DEFAULT_KNOWN_SPEAKER_THRESHOLD",
    "DEFAULT_SPEAKER_THRESHOLD",
    "MANUAL_SPEECH_THRESHOLD",
    "MAX_PENDING_VOICES",
    "MAX_PREFIX_PADDING_MS",
    "MAX_SILENCE_DURATION_MS",
    "MAX_SUBCENTROIDS",
    "MERGE_THRESHOLD",
    "MIN_COMMIT_MS",
    "MIN_NEW_SPEAKER_S",
    "NEW_SPEAKER_THRESHOLD",
    "OPENAI_INPUT_RATE",
    "SENTENCE_ENDS",
    "SUBCENTROID_THRESHOLD",
    "TURN_PAUSE_S",
    "VAD_WINDOW",
    "WINDOW_MS",
    "ClientEventError",
    "LocalAgreement",
    "RealtimeSessionConfig",
    "RealtimeTranscriptionSession",
    "ServerVad",
    "SessionTuning",
    "SpeakerTracker",
    "StreamingResampler",
    "StreamingVad",
    "WindowBuffer",
    "longest_pause_middle",
    "new_id",
    "sentence_segments",
    "session_changes",
]
