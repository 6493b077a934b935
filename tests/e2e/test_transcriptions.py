"""End to end: real audio through the running Serve DAG, with the official openai client."""

from __future__ import annotations

import io
import itertools
import json

import numpy as np
import pytest
import requests
import srt
import webvtt
from openai.types.audio import Transcription, TranscriptionDiarized, TranscriptionVerbose

from speakerscribe.types import SpeakerTurn
from tools.scoring import (
    diarization_error_rate,
    normalize_text,
    read_rttm,
    word_error_rate,
)

pytestmark = pytest.mark.e2e


def _stm(path) -> list[tuple[str, float, float, str]]:
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6:
            rows.append((parts[2], float(parts[3]), float(parts[4]), parts[5]))
    return rows


def cp_wer(reference: dict[str, str], hypothesis: dict[str, str]) -> float:
    """Concatenated minimum-permutation WER: speaker-attributed text quality."""
    import jiwer

    ref_speakers = list(reference)
    hyp_speakers = list(hypothesis) + [None] * max(0, len(reference) - len(hypothesis))
    total_words = sum(len(normalize_text(t).split()) for t in reference.values())
    best = float("inf")
    for permutation in itertools.permutations(hyp_speakers, len(ref_speakers)):
        errors = 0
        for ref, hyp in zip(ref_speakers, permutation, strict=True):
            ref_text = normalize_text(reference[ref])
            hyp_text = normalize_text(hypothesis.get(hyp, "")) if hyp else ""
            out = jiwer.process_words(ref_text, hyp_text or "<empty>")
            errors += out.substitutions + out.deletions + out.insertions
        unmatched = set(hypothesis) - set(permutation)
        errors += sum(len(normalize_text(hypothesis[h]).split()) for h in unmatched)
        best = min(best, errors / total_words)
    return best


def test_sample_wav_diarized_with_openai_client(client, testdata):
    with open(testdata / "pyannote/sample.wav", "rb") as audio:
        result = client.audio.transcriptions.create(
            model="whisper-1", file=audio, response_format="diarized_json"
        )
    assert isinstance(result, TranscriptionDiarized)
    assert result.task == "transcribe"
    assert result.duration == pytest.approx(30.0, abs=0.05)
    assert result.usage.type == "duration"
    speakers = [s.speaker for s in result.segments]
    assert len(set(speakers)) == 2
    assert speakers[0] == "A" and "B" in speakers  # labels in order of first appearance
    assert all(
        s.type == "transcript.text.segment" and isinstance(s.id, str) for s in result.segments
    )

    # DER of the speaker-labelled transcript segments against the reference turns.
    reference = read_rttm(testdata / "pyannote/sample.rttm")["sample"]
    hypothesis = [SpeakerTurn(s.start, s.end, s.speaker) for s in result.segments]
    der = diarization_error_rate(reference, hypothesis, uem=(0.0, 30.0))
    assert der <= 0.35, der

    # Speaker-attributed text against the STM (cpWER).
    reference_text: dict[str, str] = {}
    for speaker, _, _, text in _stm(testdata / "pyannote/sample.stm"):
        reference_text[speaker] = reference_text.get(speaker, "") + " " + text
    hypothesis_text: dict[str, str] = {}
    for segment in result.segments:
        hypothesis_text[segment.speaker] = (
            hypothesis_text.get(segment.speaker, "") + " " + segment.text
        )
    assert cp_wer(reference_text, hypothesis_text) <= 0.5


def test_a_quiet_recording_reads_like_the_same_one_louder(client, testdata):
    """An AMI excerpt 40 dB down (24-bit, loud frames near -76 dBFS): voice activity
    used to hear nothing in it, so the transcript came back empty."""
    import soundfile as sf

    audio, rate = sf.read(testdata / "pyannote/dev00.wav", dtype="float32")

    def transcribe(samples: np.ndarray) -> TranscriptionDiarized:
        buffer = io.BytesIO()
        sf.write(buffer, samples, rate, format="WAV", subtype="PCM_24")
        return client.audio.transcriptions.create(
            model="whisper-1",
            file=("dev00.wav", buffer.getvalue()),
            response_format="diarized_json",
        )

    native, quiet = transcribe(audio), transcribe(audio * np.float32(0.01))
    assert len({s.speaker for s in quiet.segments}) == 2
    native_words = normalize_text(native.text).split()
    assert len(normalize_text(quiet.text).split()) >= 0.8 * len(native_words), quiet.text


def test_jfk_flac_reads_as_reference(client, testdata):
    with open(testdata / "faster-whisper/jfk.flac", "rb") as audio:
        result = client.audio.transcriptions.create(model="whisper-1", file=audio)
    assert isinstance(result, Transcription)
    reference = (testdata / "faster-whisper/jfk.txt").read_text()
    assert word_error_rate(reference, result.text) <= 0.05, result.text
    assert result.usage.seconds == pytest.approx(11.0, abs=0.05)


def test_stereo_file_downmixed_or_one_speaker_per_channel(client, testdata):
    path = testdata / "faster-whisper/stereo_diarization.wav"
    left = (testdata / "faster-whisper/stereo_diarization.left.txt").read_text()
    right = (testdata / "faster-whisper/stereo_diarization.right.txt").read_text()
    # Default: downmixed to mono. The two talkers speak at once, so one voice dominates.
    with open(path, "rb") as audio:
        mixed = client.audio.transcriptions.create(model="whisper-1", file=audio)
    assert "behind the curtain on the left" in normalize_text(mixed.text)
    # multichannel: each channel transcribed on its own, labelled A (left) and B (right).
    with open(path, "rb") as audio:
        split = client.audio.transcriptions.create(
            model="whisper-1",
            file=audio,
            response_format="diarized_json",
            extra_body={"multichannel": "true"},
        )
    by_speaker: dict[str, str] = {}
    for segment in split.segments:
        by_speaker[segment.speaker] = by_speaker.get(segment.speaker, "") + " " + segment.text
    assert set(by_speaker) == {"A", "B"}
    assert word_error_rate(left, by_speaker["A"]) <= 0.15, by_speaker
    assert word_error_rate(right, by_speaker["B"]) <= 0.15, by_speaker


@pytest.mark.parametrize(
    "response_format", ["json", "text", "srt", "vtt", "verbose_json", "diarized_json"]
)
def test_every_response_format_parses(server, testdata, response_format):
    with open(testdata / "pyannote/sample.wav", "rb") as audio:
        response = requests.post(
            f"{server}/v1/audio/transcriptions",
            files={"file": ("sample.wav", audio, "audio/wav")},
            data={
                "response_format": response_format,
                "timestamp_granularities[]": ["word", "segment"],
                "enable_speaker_diarization": "true",
            },
            timeout=600,
        )
    assert response.status_code == 200, response.text
    assert "transcription;dur=" in response.headers["server-timing"]
    body = response.text
    if response_format == "json":
        parsed = Transcription.model_validate_json(body)
        assert "chicago" in parsed.text.lower()
    elif response_format == "text":
        assert "chicago" in body.lower() and response.headers["content-type"].startswith(
            "text/plain"
        )
    elif response_format == "srt":
        cues = list(srt.parse(body))
        assert cues and all(c.end >= c.start for c in cues)
        assert {c.content.split(":")[0] for c in cues} == {"A", "B"}
    elif response_format == "vtt":
        cues = list(webvtt.from_buffer(io.StringIO(body)))
        assert cues and {c.voice for c in cues} == {"A", "B"}
    elif response_format == "verbose_json":
        parsed = TranscriptionVerbose.model_validate_json(body)
        raw = json.loads(body)
        assert parsed.segments and parsed.words and parsed.language == "english"
        assert all(seg["speaker"] in ("A", "B") for seg in raw["segments"])
        assert all(word["speaker"] in ("A", "B") for word in raw["words"])
        starts = [w.start for w in parsed.words]
        assert starts == sorted(starts) and parsed.words[-1].end <= parsed.duration
    else:
        parsed = TranscriptionDiarized.model_validate_json(body)
        assert {s.speaker for s in parsed.segments} == {"A", "B"}


def test_timestamp_granularities_plain_name_and_no_diarization(server, testdata):
    with open(testdata / "faster-whisper/jfk.flac", "rb") as audio:
        response = requests.post(
            f"{server}/v1/audio/transcriptions",
            files={"file": audio},
            data={
                "response_format": "verbose_json",
                "timestamp_granularities": "word",
                "enable_speaker_diarization": "false",
            },
            timeout=600,
        )
    body = response.json()
    assert response.status_code == 200
    assert body["words"] and "speaker" not in body["words"][0]
    assert body["segments"] is None
    assert "diarization" not in response.headers["server-timing"]


def _mix_under_music(speech: np.ndarray, music: np.ndarray, snr_db: float) -> np.ndarray:
    music = np.resize(music, speech.shape)
    gain = np.sqrt(np.mean(speech**2) / (np.mean(music**2) * 10 ** (snr_db / 10)))
    mix = speech + gain * music
    return (mix / np.max(np.abs(mix)) * 0.9).astype(np.float32)


def _wav_bytes(audio: np.ndarray) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, audio, 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def test_vocal_separation_helps_speech_under_music(client, testdata):
    from speakerscribe.audio import decode_audio_bytes

    speech = decode_audio_bytes((testdata / "faster-whisper/jfk.flac").read_bytes())
    music = decode_audio_bytes((testdata / "demucs/music_with_vocals.mp3").read_bytes())
    mixture = _wav_bytes(_mix_under_music(speech, music, snr_db=-5.0))
    reference = (testdata / "faster-whisper/jfk.txt").read_text()
    errors = {}
    for separate in (False, True):
        result = client.audio.transcriptions.create(
            model="whisper-1",
            file=("mix.wav", mixture),
            extra_body={"enable_vocal_separation": str(separate).lower()},
        )
        errors[separate] = word_error_rate(reference, result.text)
    assert errors[True] < errors[False], errors


def test_models_health_and_alias(server, client):
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert "whisper-1" in ids and len(ids) >= 2
    assert requests.get(f"{server}/health", timeout=30).json()["status"] == "ok"


@pytest.mark.parametrize(
    "files,data,status,param",
    [
        ({}, {"response_format": "json"}, 400, "file"),
        ({"file": ("notes.wav", b"this is not audio at all")}, {}, 400, "file"),
        ({"file": ("empty.wav", b"")}, {}, 400, "file"),
        ({"file": ("a.wav", b"RIFF0000WAVE")}, {"response_format": "docx"}, 400, "response_format"),
        ({"file": ("a.wav", b"RIFF0000WAVE")}, {"temperature": "3"}, 400, "temperature"),
        ({"file": ("a.wav", b"RIFF0000WAVE")}, {"model": "gpt-9"}, 404, "model"),
    ],
)
def test_bad_requests_get_openai_errors(server, testdata, files, data, status, param):
    if files.get("file", (None, b""))[1] == b"RIFF0000WAVE":
        files = {"file": ("sample.wav", (testdata / "faster-whisper/jfk.flac").read_bytes())}
    response = requests.post(
        f"{server}/v1/audio/transcriptions", files=files or None, data=data, timeout=60
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and error["type"] == "invalid_request_error" and error["param"] == param
    assert requests.get(f"{server}/health", timeout=30).status_code == 200


def test_non_multipart_body_is_refused(server):
    response = requests.post(f"{server}/v1/audio/transcriptions", json={"file": "x"}, timeout=30)
    assert response.status_code == 415
    assert response.json()["error"]["param"] == "file"


def test_streaming_with_openai_client(client, testdata):
    with open(testdata / "pyannote/sample.wav", "rb") as audio:
        stream = client.audio.transcriptions.create(
            model="whisper-1",
            file=audio,
            stream=True,
            extra_body={"response_format": "diarized_json"},
        )
        events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[0] == "transcript.text.delta" and kinds[-1] == "transcript.text.done"
    deltas = "".join(e.delta for e in events if e.type == "transcript.text.delta")
    assert deltas == events[-1].text and "chicago" in deltas.lower()
    speakers = {e.speaker for e in events if e.type == "transcript.text.segment"}
    assert len(speakers) == 2


def test_streaming_bad_input_is_still_a_4xx(server):
    response = requests.post(
        f"{server}/v1/audio/transcriptions",
        files={"file": ("x.wav", b"not audio")},
        data={"stream": "true"},
        timeout=60,
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "file"
