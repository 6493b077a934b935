"""Mixed real-world load for speakerscribe: real clips, mixed options, think time.

Headless, against a running server (make serve):

    .venv/bin/locust -f load/locustfile.py --headless -u 16 -r 4 -t 2m --host http://127.0.0.1:8000
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from locust import HttpUser, between, task

TESTDATA = Path(
    os.environ.get(
        "SPEAKERSCRIBE_TESTDATA", Path(__file__).resolve().parents[2] / "shared" / "testdata"
    )
)
CLIPS = {
    name: (TESTDATA / name).read_bytes()
    for name in (
        "faster-whisper/jfk.flac",
        "faster-whisper/hotwords.mp3",
        "pyannote/sample.wav",
        "pyannote/dev00.wav",
        "speechbrain/spk1_snt1.wav",
        "speechbrain/spk2_snt2.wav",
    )
}


class TranscriptionUser(HttpUser):
    wait_time = between(0.5, 3.0)

    def _post(self, label: str, **fields):
        name = random.choice(list(CLIPS))
        with self.client.post(
            "/v1/audio/transcriptions",
            files={"file": (Path(name).name, CLIPS[name])},
            data=fields,
            name=label,
            catch_response=True,
            timeout=600,
        ) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")

    @task(4)
    def plain_json(self):
        self._post("json, no diarization", enable_speaker_diarization="false")

    @task(3)
    def diarized(self):
        self._post("diarized_json", response_format="diarized_json")

    @task(2)
    def words(self):
        self._post(
            "verbose_json + words",
            response_format="verbose_json",
            **{"timestamp_granularities[]": "word"},
            enable_speaker_diarization=random.choice(["true", "false"]),
        )

    @task(1)
    def subtitles(self):
        self._post("srt/vtt", response_format=random.choice(["srt", "vtt"]))
