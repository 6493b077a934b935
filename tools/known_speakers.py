"""Known-speaker trials on the speechbrain clips, shared by a test and a benchmark: every
enrolment of one clip per voice names the other clips, and a voice not enrolled stays
unnamed (``known_speaker_references`` as an upload gets them, through ``diarize_request``)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from speakerscribe.diarization.diarizer import Diarizer, diarize_request
from speakerscribe.types import DiarizationOptions

VOICES = {"spk1": "alice", "spk2": "bob"}
CLIPS = [f"{speaker}_snt{take}" for speaker in VOICES for take in (1, 2, 3)]


def voice_of(clip: str) -> str:
    return VOICES[clip.split("_")[0]]


def load_clips(testdata: Path) -> dict[str, np.ndarray]:
    return {
        clip: sf.read(testdata / "speechbrain" / f"{clip}.wav", dtype="float32")[0]
        for clip in CLIPS
    }


@dataclass
class Trials:
    """Counts of both trials, and each failure as (enrolled clips, probe, names given)."""

    right: int = 0
    named: int = 0
    unnamed: int = 0
    strangers: int = 0
    failures: list[tuple[tuple[str, ...], str, set[str]]] = field(default_factory=list)


def run_trials(diarizer: Diarizer, clips: dict[str, np.ndarray], threshold: float) -> Trials:
    def names(probe: str, enrolled: tuple[str, ...]) -> set[str]:
        options = DiarizationOptions(known_speakers={voice_of(c): clips[c] for c in enrolled})
        answer = diarize_request(diarizer, clips[probe], options, known_speaker_threshold=threshold)
        return {turn.speaker for turn in answer.turns}

    trials = Trials()
    first_voice = [c for c in CLIPS if voice_of(c) == "alice"]
    second_voice = [c for c in CLIPS if voice_of(c) == "bob"]
    for enrolled in itertools.product(first_voice, second_voice):
        for probe in set(CLIPS) - set(enrolled):
            trials.named += 1
            given = names(probe, enrolled)
            if given == {voice_of(probe)}:
                trials.right += 1
            else:
                trials.failures.append((enrolled, probe, given))
    for enrolled_clip, probe in itertools.product(CLIPS, CLIPS):
        if voice_of(enrolled_clip) == voice_of(probe):
            continue
        trials.strangers += 1
        given = names(probe, (enrolled_clip,))
        if voice_of(enrolled_clip) not in given:
            trials.unnamed += 1
        else:
            trials.failures.append(((enrolled_clip,), probe, given))
    return trials
