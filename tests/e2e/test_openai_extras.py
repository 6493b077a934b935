"""OpenAI API completeness through the running application, with the official client:
translations, logprobs, chunking_strategy, known speakers and overlapped speech."""

from __future__ import annotations

import base64
import io
import random

import numpy as np
import pytest
import requests
import soundfile
import srt
import webvtt

from tools.scoring import word_error_rate as wer

pytestmark = pytest.mark.e2e

RATE = 16000


def wav(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def data_url(path) -> str:
    return "data:audio/wav;base64," + base64.b64encode(path.read_bytes()).decode()


def clip(testdata, name: str) -> np.ndarray:
    audio, rate = soundfile.read(testdata / f"speechbrain/{name}.wav", dtype="float32")
    assert rate == RATE
    return audio


# --- translations ---------------------------------------------------------------------


def test_translation_of_english_speech_is_english_text(client, testdata):
    reference = (testdata / "faster-whisper/jfk.txt").read_text()
    with open(testdata / "faster-whisper/jfk.flac", "rb") as audio:
        translation = client.audio.translations.create(model="whisper-1", file=audio)
    assert wer(reference, translation.text) <= 0.1, translation.text

    with open(testdata / "faster-whisper/jfk.flac", "rb") as audio:
        verbose = client.audio.translations.create(
            model="whisper-1", file=audio, response_format="verbose_json"
        )
    assert (
        verbose.language == "english"
        and verbose.segments
        and verbose.duration == pytest.approx(11.0, abs=0.1)
    )


@pytest.mark.parametrize("response_format", ["srt", "vtt"])
def test_translation_subtitles_parse(client, testdata, response_format):
    with open(testdata / "faster-whisper/jfk.flac", "rb") as audio:
        body = client.audio.translations.create(
            model="whisper-1", file=audio, response_format=response_format
        )
    if response_format == "srt":
        cues = [
            (c.start.total_seconds(), c.end.total_seconds(), c.content) for c in srt.parse(body)
        ]
    else:
        cues = [
            (c.start_in_seconds, c.end_in_seconds, c.text)
            for c in webvtt.from_buffer(io.StringIO(body))
        ]
    assert cues and all(0 <= start <= end <= 11.1 for start, end, _ in cues)
    assert (
        "ask not what your country can do for you" in " ".join(text for _, _, text in cues).lower()
    )


def test_translation_refuses_transcription_only_fields(server, testdata):
    response = requests.post(
        f"{server}/v1/audio/translations",
        files={"file": ("jfk.flac", (testdata / "faster-whisper/jfk.flac").read_bytes())},
        data={"response_format": "diarized_json"},
        timeout=60,
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "response_format"


# --- logprobs -------------------------------------------------------------------------


def test_logprobs_one_per_token_when_asked_absent_otherwise(client, testdata):
    with open(testdata / "faster-whisper/jfk.flac", "rb") as audio:
        asked = client.audio.transcriptions.create(
            model="whisper-1", file=audio, include=["logprobs"]
        )
    assert asked.logprobs, "no logprobs"
    assert (
        "".join(lp.token for lp in asked.logprobs).strip() == asked.text
    )  # each token once, in order
    assert all(lp.logprob < 0 for lp in asked.logprobs)
    assert all(bytes(int(b) for b in lp.bytes).decode() == lp.token for lp in asked.logprobs)

    with open(testdata / "faster-whisper/jfk.flac", "rb") as audio:
        plain = client.audio.transcriptions.create(model="whisper-1", file=audio)
    assert plain.logprobs is None and plain.text == asked.text


def test_logprobs_need_json(server, testdata):
    response = requests.post(
        f"{server}/v1/audio/transcriptions",
        files={"file": ("jfk.flac", (testdata / "faster-whisper/jfk.flac").read_bytes())},
        data={"include[]": "logprobs", "response_format": "verbose_json"},
        timeout=60,
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "include"


# --- chunking_strategy ----------------------------------------------------------------


def test_server_vad_chunking_cuts_at_utterances(client, testdata):
    from speakerscribe.audio import decode_audio_bytes

    jfk = decode_audio_bytes((testdata / "faster-whisper/jfk.flac").read_bytes())
    gap_start = jfk.shape[0] / RATE
    audio = wav(np.concatenate([jfk, np.zeros(3 * RATE, np.float32), jfk]))
    reference = (testdata / "faster-whisper/jfk.txt").read_text()

    answers = {}
    for name, strategy in [
        ("unset", None),
        ("auto", "auto"),
        (
            "server_vad",
            {
                "type": "server_vad",
                "threshold": 0.5,
                "prefix_padding_ms": 200,
                "silence_duration_ms": 800,
            },
        ),
    ]:
        extra = {} if strategy is None else {"chunking_strategy": strategy}
        answers[name] = client.audio.transcriptions.create(
            model="whisper-1",
            file=("two.wav", audio),
            response_format="verbose_json",
            extra_body={"enable_speaker_diarization": False},
            **extra,
        )
        assert wer(reference + " " + reference, answers[name].text) <= 0.1, (
            name,
            answers[name].text,
        )
    # server_vad decodes each utterance on its own: no segment reaches into the 3 s of silence
    for segment in answers["server_vad"].segments:
        assert segment.end <= gap_start + 0.3 or segment.start >= gap_start + 3 - 0.3, segment


def test_bad_chunking_strategy_is_a_400(server, testdata):
    response = requests.post(
        f"{server}/v1/audio/transcriptions",
        files={"file": ("jfk.flac", (testdata / "faster-whisper/jfk.flac").read_bytes())},
        data={"chunking_strategy[type]": "server_vad", "chunking_strategy[threshold]": "3"},
        timeout=60,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "chunking_strategy"
    assert "threshold" in response.json()["error"]["message"]


# --- known speakers -------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_enrolled_speakers_are_named_on_every_segment(client, testdata, seed):
    """Enrol spk1_snt1 and spk2_snt1; the other four clips, shuffled, must carry the right names."""
    names = {"spk1": "alice", "spk2": "bob"}
    order = ["spk1_snt2", "spk1_snt3", "spk2_snt2", "spk2_snt3"]
    random.Random(seed).shuffle(order)
    parts, truth, position = [], [], 0.0
    for name in order:
        audio = clip(testdata, name)
        truth.append((position, position + audio.shape[0] / RATE, names[name[:4]]))
        parts += [audio, np.zeros(RATE // 2, np.float32)]
        position += audio.shape[0] / RATE + 0.5
    result = client.audio.transcriptions.create(
        model="whisper-1",
        file=("mix.wav", wav(np.concatenate(parts))),
        response_format="diarized_json",
        known_speaker_names=["alice", "bob"],
        known_speaker_references=[
            data_url(testdata / "speechbrain/spk1_snt1.wav"),
            data_url(testdata / "speechbrain/spk2_snt1.wav"),
        ],
    )
    assert result.segments
    right = 0
    for segment in result.segments:
        middle = (segment.start + segment.end) / 2
        expected = min(
            truth,
            key=lambda t: (
                0 if t[0] <= middle <= t[1] else min(abs(middle - t[0]), abs(middle - t[1]))
            ),
        )[2]
        right += segment.speaker == expected
    accuracy = right / len(result.segments)
    print(f"known speakers, order {order}: {right}/{len(result.segments)} segments named right")
    assert accuracy == 1.0, [(s.start, s.end, s.speaker) for s in result.segments]


def test_an_unenrolled_voice_keeps_a_letter(client, testdata):
    mix = np.concatenate(
        [clip(testdata, "spk1_snt2"), np.zeros(RATE // 2, np.float32), clip(testdata, "spk2_snt2")]
    )
    result = client.audio.transcriptions.create(
        model="whisper-1",
        file=("mix.wav", wav(mix)),
        response_format="diarized_json",
        known_speaker_names=["bob"],
        known_speaker_references=[data_url(testdata / "speechbrain/spk2_snt1.wav")],
    )
    speakers = [s.speaker for s in result.segments]
    assert speakers[-1] == "bob" and "A" in speakers, speakers


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        (
            {
                "known_speaker_names[]": ["a", "b"],
                "known_speaker_references[]": ["data:audio/wav;base64,AAAA"],
            },
            "known_speaker_references",
        ),
        (
            {"known_speaker_names[]": ["a"], "known_speaker_references[]": ["not a data url"]},
            "known_speaker_references[0]",
        ),
        (
            {
                "known_speaker_names[]": ["a"],
                "known_speaker_references[]": ["data:audio/wav;base64,UklGRg=="],
            },
            "known_speaker_references[0]",
        ),
    ],
)
def test_bad_known_speaker_fields_are_400s(server, testdata, fields, param):
    response = requests.post(
        f"{server}/v1/audio/transcriptions",
        files={"file": ("jfk.flac", (testdata / "faster-whisper/jfk.flac").read_bytes())},
        data=fields,
        timeout=60,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_a_reference_too_short_is_a_400(server, testdata):
    short = (
        "data:audio/wav;base64,"
        + base64.b64encode(wav(clip(testdata, "spk2_snt2")[:RATE])).decode()
    )
    response = requests.post(
        f"{server}/v1/audio/transcriptions",
        files={"file": ("jfk.flac", (testdata / "faster-whisper/jfk.flac").read_bytes())},
        data={"known_speaker_names[]": ["a"], "known_speaker_references[]": [short]},
        timeout=60,
    )
    assert response.status_code == 400 and "2 to 10 s" in response.json()["error"]["message"]


# --- overlapped speech ----------------------------------------------------------------


def test_overlap_flags_cover_the_reference_overlap(client, testdata):
    """The server path carries the detector's flags onto words. The bound is the unit
    test's (test_detector_flags_half_of_the_reference_overlap), whose coverage varies
    with the machine; the server's sentence-cased words cover a little less than
    faster-whisper's own transcribe does."""
    from speakerscribe.diarization.overlap import (
        intersect_regions,
        overlap_regions,
        regions_duration,
    )
    from tools.scoring import read_rttm

    rttm = read_rttm(testdata / "pyannote/debug.development.rttm")
    total_reference = total_covered = 0.0
    for uri in ("dev00", "dev01"):
        with open(testdata / f"pyannote/{uri}.wav", "rb") as audio:
            result = client.audio.transcriptions.create(
                model="whisper-1",
                file=audio,
                response_format="verbose_json",
                timestamp_granularities=["word", "segment"],
                extra_body={"enable_overlap_detection": True},
            )
        body = result.model_dump()
        words = body["words"]
        assert (
            words
            and all("overlap" in w for w in words)
            and all("overlap" in s for s in body["segments"])
        )
        flagged = [(w["start"], w["end"]) for w in words if w["overlap"]]
        reference = overlap_regions(rttm[uri])
        covered = regions_duration(intersect_regions(flagged, reference))
        print(
            f"{uri}: reference overlap {regions_duration(reference):.2f} s, flagged words "
            f"cover {covered:.2f} s"
        )
        total_reference += regions_duration(reference)
        total_covered += covered
    assert total_covered >= 0.4 * total_reference, (total_covered, total_reference)


def test_no_overlap_fields_unless_asked(client, testdata):
    with open(testdata / "pyannote/dev00.wav", "rb") as audio:
        result = client.audio.transcriptions.create(
            model="whisper-1",
            file=audio,
            response_format="verbose_json",
            timestamp_granularities=["word"],
        )
    assert all("overlap" not in w for w in result.model_dump()["words"])
