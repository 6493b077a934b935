"""The transcription flow without Ray: fake stages record what the ingress sends them."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from speakerscribe.errors import ModelNotFoundError
from speakerscribe.pipeline.prepared import server_timing
from speakerscribe.pipeline.service import TranscriptionService
from speakerscribe.protocol import OPENAI_MODEL_IDS, TranscriptionRequest
from speakerscribe.settings import load_settings
from speakerscribe.types import SAMPLE_RATE, Diarization, Segment, SpeakerTurn, Word


class FakeStages:
    """Each piece 'says' one word at its middle; the diarizer says A before 20 s, B after."""

    def __init__(self):
        self.pieces: list[int] = []
        self.diarized = 0
        self.separated = 0
        self.models: list[str] = []
        self.language_samples: list[int] = []

    async def separate(self, audio):
        self.separated += 1
        return audio

    async def detect_language(self, audio, model):
        self.models.append(model)
        self.language_samples.append(audio.shape[0])
        return "de"

    async def transcribe(self, piece, options):
        self.pieces.append(piece.shape[0])
        self.models.append(options.model)
        middle = piece.shape[0] / SAMPLE_RATE / 2
        words = [Word(" w", middle - 0.1, middle + 0.1)] if options.word_timestamps else []
        return [Segment(0, 0, middle - 0.1, middle + 0.1, " w", words=words)]

    async def diarize(self, audio, options):
        self.diarized += 1
        self.diarization_options = options
        end = audio.shape[0] / SAMPLE_RATE
        first = next(iter(options.known_speakers), "s1")  # an enrolled name takes the first voice
        turns = [SpeakerTurn(0.0, 20.0, first), SpeakerTurn(20.0, end, "s2")]
        overlaps = [(0.0, 20.0)] if options.detect_overlap else []
        return Diarization(turns, overlaps, {first: 0.9} if options.known_speakers else {})


def wav_bytes(audio: np.ndarray) -> bytes:
    import io

    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, audio, SAMPLE_RATE, format="WAV")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def long_speech(testdata) -> bytes:
    from speakerscribe.audio import decode_audio_bytes

    sample = decode_audio_bytes((testdata / "pyannote/sample.wav").read_bytes())
    return wav_bytes(np.concatenate([sample, sample, sample]))  # 90 s


def run(coro):
    return asyncio.run(coro)


def test_pieces_fan_out_and_words_get_speakers(long_speech):
    stages = FakeStages()
    service = TranscriptionService(load_settings(), stages)
    result = run(
        service.transcribe(long_speech, TranscriptionRequest(response_format="diarized_json"))
    )
    assert len(stages.pieces) >= 3 and max(stages.pieces) <= 30 * SAMPLE_RATE
    assert stages.diarized == 1 and result.diarized
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts) and result.duration == 90.0
    assert {s.speaker for s in result.segments} == {"A", "B"}
    assert set(result.stage_seconds) >= {
        "decode",
        "chunking",
        "transcription",
        "diarization",
        "merge",
    }
    assert "transcription;dur=" in server_timing(result.stage_seconds)


def test_diarization_off_skips_the_diarizer_and_word_timestamps(long_speech):
    stages = FakeStages()
    service = TranscriptionService(load_settings(), stages)
    request = TranscriptionRequest(enable_speaker_diarization=False)
    result = run(service.transcribe(long_speech, request))
    assert stages.diarized == 0 and not result.diarized
    assert all(not s.words and s.speaker is None for s in result.segments)


def test_separation_and_language_detection(long_speech):
    stages = FakeStages()
    service = TranscriptionService(load_settings(), stages)
    result = run(
        service.transcribe(long_speech, TranscriptionRequest(enable_vocal_separation=True))
    )
    assert stages.separated == 1 and result.language == "de"


def test_silence_sends_nothing_to_the_transcriber():
    stages = FakeStages()
    service = TranscriptionService(load_settings(), stages)
    silence = wav_bytes(np.zeros(120 * SAMPLE_RATE, dtype=np.float32))
    result = run(
        service.transcribe(silence, TranscriptionRequest(enable_speaker_diarization=False))
    )
    assert stages.pieces == [] and result.text == "" and result.duration == 120.0


def test_unknown_model_is_404_and_alias_works():
    service = TranscriptionService(load_settings(), FakeStages())
    assert service.resolve_model("whisper-1") == service.resolve_model(None) == "whisper-tiny.en"
    with pytest.raises(ModelNotFoundError, match="gpt-9"):
        service.resolve_model("gpt-9")


def test_openai_model_ids_are_aliases_of_the_default():
    settings = load_settings()
    service = TranscriptionService(settings, FakeStages())
    for model in OPENAI_MODEL_IDS:
        assert service.resolve_model(model) == "whisper-tiny.en"
    assert settings.model_ids == ["whisper-tiny.en", *OPENAI_MODEL_IDS]


def test_configured_aliases_replace_the_defaults(tmp_path):
    settings = load_settings(
        whisper_models={"small": str(tmp_path)},
        model_aliases={"gpt-4o-transcribe": "small", "whisper-1": "default"},
    )
    service = TranscriptionService(settings, FakeStages())
    assert service.resolve_model("gpt-4o-transcribe") == "small"
    assert service.resolve_model("whisper-1") == "whisper-tiny.en"
    with pytest.raises(ModelNotFoundError, match="gpt-4o-mini-transcribe"):
        service.resolve_model("gpt-4o-mini-transcribe")


def test_requests_name_one_of_several_models(long_speech, tmp_path):
    stages = FakeStages()
    service = TranscriptionService(load_settings(whisper_models={"other": str(tmp_path)}), stages)
    run(
        service.transcribe(
            long_speech, TranscriptionRequest(model="other", enable_speaker_diarization=False)
        )
    )
    run(service.transcribe(long_speech, TranscriptionRequest(enable_speaker_diarization=False)))
    assert set(stages.models) == {"other", "whisper-tiny.en"}
    assert stages.models[0] == "other"  # language detection asks the requested model


def test_stream_events_deltas_in_order_then_segments_then_done(long_speech):
    stages = FakeStages()
    service = TranscriptionService(load_settings(), stages)

    async def collect():
        prepared = await service.prepare(
            long_speech, TranscriptionRequest(stream=True, response_format="diarized_json")
        )
        return [event async for event in service.stream_events(prepared)]

    events = run(collect())
    kinds = [e["type"] for e in events]
    assert kinds[0] == "transcript.text.delta" and kinds[-1] == "transcript.text.done"
    first_segment = kinds.index("transcript.text.segment")
    assert all(k == "transcript.text.delta" for k in kinds[:first_segment])
    deltas = "".join(e["delta"] for e in events if e["type"] == "transcript.text.delta")
    assert deltas == events[-1]["text"] and events[-1]["usage"]["seconds"] == 90.0
    assert {e["speaker"] for e in events if e["type"] == "transcript.text.segment"} == {"A", "B"}


@pytest.mark.parametrize(
    "fields,diarized",
    [
        ({}, False),
        ({"response_format": "text"}, False),
        ({"response_format": "json", "enable_speaker_diarization": True}, True),
        ({"response_format": "json", "stream": True}, True),
        ({"response_format": "srt"}, True),
        ({"response_format": "verbose_json"}, True),
    ],
)
def test_json_and_text_run_the_diarizer_only_when_asked(long_speech, fields, diarized):
    """The settings default (on) decides only for answers that show speakers."""
    stages = FakeStages()
    service = TranscriptionService(load_settings(enable_speaker_diarization=True), stages)
    request = TranscriptionRequest(**fields)
    run(service.transcribe(long_speech, request))
    assert stages.diarized == int(diarized)


def test_a_stuck_stage_is_a_504_and_a_lost_replica_a_503(long_speech):
    from speakerscribe.errors import OverloadedError, StageTimeoutError

    class SlowDiarizer(FakeStages):
        async def diarize(self, *args):
            await asyncio.sleep(30)

    settings = load_settings(stage_timeout_s=0.2, stage_timeout_per_audio_s=0.0)
    with pytest.raises(StageTimeoutError) as raised:
        run(
            TranscriptionService(settings, SlowDiarizer()).transcribe(
                long_speech, TranscriptionRequest(response_format="verbose_json")
            )
        )
    assert raised.value.status_code == 504 and "diarization" in raised.value.message

    class ActorDiedError(Exception):  # stands in for ray.exceptions.ActorDiedError
        pass

    class DyingTranscriber(FakeStages):
        async def transcribe(self, piece, options):
            raise ActorDiedError("replica died")

    with pytest.raises(OverloadedError) as raised:
        run(
            TranscriptionService(load_settings(), DyingTranscriber()).transcribe(
                long_speech, TranscriptionRequest()
            )
        )
    assert raised.value.status_code == 503 and raised.value.code == "replica_failed"


def data_url(audio: np.ndarray) -> str:
    import base64

    return "data:audio/wav;base64," + base64.b64encode(wav_bytes(audio)).decode()


def test_known_speakers_keep_their_names_and_others_get_letters(long_speech, testdata):
    from speakerscribe.audio import decode_audio_bytes

    clip = decode_audio_bytes((testdata / "speechbrain/spk1_snt1.wav").read_bytes())
    stages = FakeStages()
    service = TranscriptionService(load_settings(), stages)
    request = TranscriptionRequest.from_form(
        {"known_speaker_names": ["agent"], "known_speaker_references": [data_url(clip)]}
    )
    result = run(service.transcribe(long_speech, request))
    assert list(stages.diarization_options.known_speakers) == ["agent"]
    assert stages.diarization_options.known_speakers["agent"].shape[0] == clip.shape[0]
    assert [s.speaker for s in result.segments][:1] == ["agent"]
    assert {s.speaker for s in result.segments} == {"agent", "A"}
    assert result.identified == {"agent": 0.9}


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("https://example.com/a.wav", "data URL"),
        ("data:audio/wav;base64,@@@", "base64"),
        ("data:text/plain;base64,aGVsbG8=", "not audio"),
        ("data:audio/wav;base64,aGVsbG8=", "could not decode"),
        ("short", "data URL"),
    ],
)
def test_bad_reference_clips_are_400s_that_name_the_reference(long_speech, reference, message):
    from speakerscribe.errors import InvalidRequestError

    service = TranscriptionService(load_settings(), FakeStages())
    request = TranscriptionRequest.from_form(
        {"known_speaker_names": ["a"], "known_speaker_references": [reference]}
    )
    with pytest.raises(InvalidRequestError, match=message) as raised:
        run(service.transcribe(long_speech, request))
    assert raised.value.status_code == 400 and raised.value.param == "known_speaker_references[0]"


@pytest.mark.parametrize("seconds", [1.0, 12.0])
def test_reference_clips_outside_2_to_10_s_are_refused(long_speech, seconds):
    from speakerscribe.errors import InvalidRequestError

    clip = np.random.default_rng(0).normal(0, 0.1, int(seconds * SAMPLE_RATE)).astype(np.float32)
    service = TranscriptionService(load_settings(), FakeStages())
    request = TranscriptionRequest.from_form(
        {"known_speaker_names": ["a"], "known_speaker_references": [data_url(clip)]}
    )
    with pytest.raises(InvalidRequestError, match="2 to 10 s"):
        run(service.transcribe(long_speech, request))


def test_more_known_speakers_than_the_setting_allows_is_a_400(long_speech):
    from speakerscribe.errors import InvalidRequestError

    service = TranscriptionService(load_settings(max_known_speakers=1), FakeStages())
    request = TranscriptionRequest.from_form(
        {"known_speaker_names": ["a", "b"], "known_speaker_references": ["x", "y"]}
    )
    with pytest.raises(InvalidRequestError, match="at most 1 known"):
        run(service.transcribe(long_speech, request))


def test_overlap_flags_reach_words_and_segments(long_speech):
    stages = FakeStages()
    service = TranscriptionService(load_settings(), stages)
    result = run(
        service.transcribe(long_speech, TranscriptionRequest(enable_overlap_detection=True))
    )
    assert stages.diarization_options.detect_overlap and result.overlap
    flagged = [w for s in result.segments for w in s.words if w.overlap]
    assert flagged and all(w.start <= 20.1 for w in flagged)
    assert any(not w.overlap for s in result.segments for w in s.words)
    assert all(s.overlap == any(w.overlap for w in s.words) for s in result.segments)


def test_server_vad_chunking_sends_one_piece_per_utterance(long_speech):
    default, vad = FakeStages(), FakeStages()
    run(
        TranscriptionService(load_settings(), default).transcribe(
            long_speech, TranscriptionRequest()
        )
    )
    request = TranscriptionRequest.from_form(
        {"chunking_strategy": {"type": "server_vad", "silence_duration_ms": "200"}}
    )
    run(TranscriptionService(load_settings(), vad).transcribe(long_speech, request))
    assert len(vad.pieces) > len(default.pieces)  # utterances, not ≤ 30 s stretches
    assert sum(vad.pieces) < sum(default.pieces)  # the silence between them is not sent


def test_progress_rises_and_pieces_in_flight_are_capped(long_speech):
    class CountingStages(FakeStages):
        in_flight = peak = 0

        async def transcribe(self, piece, options):
            CountingStages.in_flight += 1
            CountingStages.peak = max(CountingStages.peak, CountingStages.in_flight)
            await asyncio.sleep(0.01)
            CountingStages.in_flight -= 1
            return await super().transcribe(piece, options)

    seen: list[tuple[str, float]] = []
    service = TranscriptionService(load_settings(), CountingStages())
    request = TranscriptionRequest.from_form(
        {"chunking_strategy": {"type": "server_vad"}, "enable_speaker_diarization": "false"}
    )
    run(
        service.transcribe(
            long_speech, request, progress=lambda *a: seen.append(a), pieces_in_flight=1
        )
    )
    assert CountingStages.peak == 1
    fractions = [f for stage, f in seen if stage == "transcription"]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert seen[0][0] == "decoding" and seen[-1] == ("merge", 1.0)


def test_a_diarized_job_reports_the_diarizer_once_transcription_is_done(long_speech):
    seen: list[tuple[str, float]] = []
    service = TranscriptionService(load_settings(), FakeStages())
    request = TranscriptionRequest(response_format="diarized_json")
    run(service.transcribe(long_speech, request, progress=lambda *a: seen.append(a)))
    stages = [stage for stage, _ in seen]
    assert stages.index("diarization") > max(
        i for i, s in enumerate(stages) if s == "transcription"
    )


def test_language_detection_is_sent_30_s_not_the_rest_of_the_file(long_speech):
    stages = FakeStages()
    service = TranscriptionService(load_settings(), stages)
    run(service.transcribe(long_speech, TranscriptionRequest(enable_speaker_diarization=False)))
    assert stages.language_samples == [30 * SAMPLE_RATE]  # of a 90 s file


def test_the_diarizer_starts_before_chunking_and_language_detection(long_speech):
    """Language detection here answers only once the diarizer has been called: a flow
    that waited for the language before diarizing would never finish."""

    class LanguageAfterDiarizer(FakeStages):
        def __init__(self):
            super().__init__()
            self.diarizer_called = asyncio.Event()

        async def detect_language(self, audio, model):
            await asyncio.wait_for(self.diarizer_called.wait(), timeout=10)
            return await super().detect_language(audio, model)

        async def diarize(self, audio, options):
            self.diarizer_called.set()
            return await super().diarize(audio, options)

    stages = LanguageAfterDiarizer()
    service = TranscriptionService(load_settings(), stages)
    request = TranscriptionRequest(response_format="diarized_json")
    result = run(service.transcribe(long_speech, request))
    assert result.diarized and result.language == "de" and stages.diarized == 1


def test_a_request_that_fails_after_decoding_stops_its_diarizer(long_speech):
    class FailingLanguage(FakeStages):
        def __init__(self):
            super().__init__()
            self.diarizer_cancelled = False

        async def detect_language(self, audio, model):
            await asyncio.sleep(0.05)
            raise ValueError("language detection failed")

        async def diarize(self, audio, options):
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                self.diarizer_cancelled = True
                raise

    stages = FailingLanguage()
    service = TranscriptionService(load_settings(), stages)
    request = TranscriptionRequest(response_format="diarized_json")

    async def attempt():
        with pytest.raises(ValueError):
            await service.transcribe(long_speech, request)
        await asyncio.sleep(0)  # let the cancellation reach the diarizer

    run(attempt())
    assert stages.diarizer_cancelled


class ActorDiedError(Exception):  # stands in for ray.exceptions.ActorDiedError
    pass


def test_a_call_whose_replica_died_is_sent_again_and_counted():
    from speakerscribe.pipeline.stages import retry_lost_replica

    attempts, retried = [], []

    async def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise ActorDiedError("replica died")
        return "words"

    result = run(retry_lost_replica(flaky, 2, backoff_s=0.0, on_retry=lambda: retried.append(1)))
    assert result == "words" and len(attempts) == 3 and len(retried) == 2


def test_retries_are_bounded_and_bad_input_is_not_retried():
    from speakerscribe.errors import AudioDecodeError
    from speakerscribe.pipeline.stages import retry_lost_replica

    calls = []

    async def dead():
        calls.append(1)
        raise ActorDiedError("gone")

    with pytest.raises(ActorDiedError):
        run(retry_lost_replica(dead, 1, backoff_s=0.0))
    assert len(calls) == 2

    async def bad():
        calls.append(1)
        raise AudioDecodeError("not audio")

    calls.clear()
    with pytest.raises(AudioDecodeError):
        run(retry_lost_replica(bad, 3, backoff_s=0.0))
    assert len(calls) == 1
