"""Decoding: every container the API promises, any rate, any channel count → 16 kHz mono."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from speakerscribe.audio import decode_audio_bytes, decode_audio_channels
from speakerscribe.errors import AudioDecodeError, PayloadTooLargeError


def encode(audio: np.ndarray, rate: int, container: str, codec: str, channels: int = 1) -> bytes:
    """Encode float audio with PyAV (bundled FFmpeg) into an in-memory file."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as output:
        stream = output.add_stream(codec, rate=rate)
        stream.layout = "mono" if channels == 1 else "stereo"
        planar = np.tile(audio.astype(np.float32), (channels, 1))
        fmt = stream.codec_context.format.name if stream.codec_context.format else "fltp"
        frame = av.AudioFrame.from_ndarray(
            _to_format(planar, fmt), format=fmt, layout=stream.layout.name
        )
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
    return buffer.getvalue()


def _to_format(planar: np.ndarray, fmt: str) -> np.ndarray:
    if fmt == "s16":
        return (planar.T.reshape(1, -1) * 32767).astype(np.int16)
    if fmt == "s16p":
        return (planar * 32767).astype(np.int16)
    if fmt == "s32p":
        return (planar * 2**31 * 0.99).astype(np.int32)
    if fmt == "flt":
        return planar.T.reshape(1, -1).astype(np.float32)
    return planar.astype(np.float32)  # fltp


def tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return 0.3 * np.sin(2 * np.pi * freq * t)


@pytest.mark.parametrize(
    "container,codec,rate",
    [
        ("wav", "pcm_s16le", 8000),
        ("wav", "pcm_s16le", 44100),
        ("flac", "flac", 48000),
        ("mp3", "libmp3lame", 44100),
        ("ipod", "aac", 44100),  # .m4a
        ("mp4", "aac", 22050),
        ("ogg", "libopus", 48000),
        ("webm", "libopus", 48000),
    ],
)
def test_containers_decode_to_16k_mono(container, codec, rate):
    try:
        data = encode(tone(2.0, rate), rate, container, codec, channels=2)
    except (av.error.FFmpegError, ValueError) as error:
        pytest.skip(f"this PyAV build cannot encode {codec}: {error}")
    audio = decode_audio_bytes(data)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size / 16000 - 2.0) < 0.1  # codecs may pad a frame
    assert 0.1 < np.abs(audio).max() <= 1.0


def test_real_files(testdata):
    jfk = decode_audio_bytes((testdata / "faster-whisper/jfk.flac").read_bytes())
    assert jfk.size == 11 * 16000
    left, right = decode_audio_channels(
        (testdata / "faster-whisper/stereo_diarization.wav").read_bytes()
    )
    assert left.shape == right.shape == (5 * 16000,)
    assert not np.allclose(left, right)


@pytest.mark.parametrize("data", [b"", b"plain text, not audio", b"RIFF\x00\x00\x00\x00WAVEfmt "])
def test_undecodable_input_is_a_typed_error(data):
    with pytest.raises(AudioDecodeError) as raised:
        decode_audio_bytes(data)
    assert raised.value.status_code == 400 and raised.value.param == "file"


def test_duration_limit():
    data = encode(tone(3.0, 16000), 16000, "wav", "pcm_s16le")
    with pytest.raises(PayloadTooLargeError):
        decode_audio_bytes(data, max_duration_s=1.0)


def test_nan_samples_are_zeroed_before_resampling():
    import soundfile

    audio = tone(1.0, 44100).astype(np.float32)
    audio[::50] = np.nan
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, 44100, format="WAV", subtype="FLOAT")
    decoded = decode_audio_bytes(buffer.getvalue())
    assert np.isfinite(decoded).all() and np.abs(decoded).max() <= 0.5  # no full-scale clicks


def test_matches_faster_whisper_decoding(testdata):
    from faster_whisper import decode_audio

    path = testdata / "faster-whisper/jfk.flac"
    ours = decode_audio_bytes(path.read_bytes())
    theirs = decode_audio(str(path))
    assert ours.shape == theirs.shape and np.abs(ours - theirs).max() < 1e-3


def test_decoding_stops_at_the_duration_limit():
    data = encode(tone(30.0, 16000), 16000, "wav", "pcm_s16le")
    with pytest.raises(PayloadTooLargeError) as raised:
        decode_audio_bytes(data, max_duration_s=2.0)
    assert raised.value.code == "audio_too_long"


def test_many_channels_without_a_layout_mask():
    """8-channel WAV from soundfile has no channel mask; FFmpeg's resampler used to crash on it."""
    import soundfile

    x = np.random.default_rng(0).uniform(-0.3, 0.3, (48000, 8)).astype(np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, x, 48000, format="WAV", subtype="PCM_24")
    assert decode_audio_bytes(buffer.getvalue()).shape == (16000,)
    left, right = decode_audio_channels(buffer.getvalue())
    assert left.shape == right.shape == (16000,)
