"""Known speakers (``known_speaker_references``) on the speechbrain clips, two voices.

Prints the bundled voice model's cosine similarity between whole clips of the same
speaker and of different speakers, against the ``known_speaker_threshold`` default; then
names as an upload gets them (``diarize_request``, in process):

- every enrolment of one clip per speaker (3 x 3), each naming the four other clips:
  the right name wanted;
- every enrolment of one speaker's clip alone, naming the other speaker's clips: no name
  wanted (a stranger must not take an enrolled name).

    python load/evaluate_known_speakers.py [--threshold 0.5]
"""

from __future__ import annotations

import argparse
import itertools
import warnings

import soundfile as sf
from _server import testdata_dir

from speakerscribe.diarization.diarizer import diarize_request, load_diarizer
from speakerscribe.diarization.known_speakers import cosine
from speakerscribe.settings import load_settings
from speakerscribe.types import DiarizationOptions

SPEAKERS = {"spk1": "alice", "spk2": "bob"}
CLIPS = [f"{speaker}_snt{take}" for speaker in SPEAKERS for take in (1, 2, 3)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=load_settings().known_speaker_threshold)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    audio = {
        clip: sf.read(testdata_dir() / "speechbrain" / f"{clip}.wav", dtype="float32")[0]
        for clip in CLIPS
    }
    diarizer = load_diarizer("bundled")

    voices = {clip: diarizer.embed(samples) for clip, samples in audio.items()}
    same, different = [], []
    for first, second in itertools.combinations(CLIPS, 2):
        score = cosine(voices[first], voices[second])
        (same if first[:4] == second[:4] else different).append(score)
    print(
        f"cosine, whole clips: same speaker {min(same):.2f}-{max(same):.2f} ({len(same)} pairs), "
        f"different speakers {min(different):.2f}-{max(different):.2f} ({len(different)} pairs); "
        f"threshold {args.threshold:.2f}"
    )

    def names_of(probe: str, enrolled: dict[str, str]) -> set[str]:
        options = DiarizationOptions(
            known_speakers={name: audio[clip] for name, clip in enrolled.items()}
        )
        answer = diarize_request(
            diarizer, audio[probe], options, known_speaker_threshold=args.threshold
        )
        return {turn.speaker for turn in answer.turns}

    right = total = 0
    for first, second in itertools.product(CLIPS[:3], CLIPS[3:]):
        enrolled = {SPEAKERS["spk1"]: first, SPEAKERS["spk2"]: second}
        for probe in CLIPS:
            if probe in (first, second):
                continue
            total += 1
            right += names_of(probe, enrolled) == {SPEAKERS[probe[:4]]}
    print(f"named right, one clip enrolled per speaker: {right}/{total}")

    unnamed = strangers = 0
    for enrolled_clip, probe in itertools.product(CLIPS, CLIPS):
        if enrolled_clip[:4] == probe[:4]:
            continue
        strangers += 1
        name = SPEAKERS[enrolled_clip[:4]]
        unnamed += name not in names_of(probe, {name: enrolled_clip})
    print(f"left unnamed, the other speaker alone enrolled: {unnamed}/{strangers}")
    print(f"\ncommand: python load/evaluate_known_speakers.py --threshold {args.threshold:g}")


if __name__ == "__main__":
    main()
