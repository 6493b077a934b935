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

from _server import testdata_dir

from speakerscribe.diarization.diarizer import load_diarizer
from speakerscribe.diarization.known_speakers import cosine
from speakerscribe.settings import load_settings
from tools.known_speakers import CLIPS, load_clips, run_trials, voice_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=load_settings().known_speaker_threshold)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    audio = load_clips(testdata_dir())
    diarizer = load_diarizer("bundled")

    voices = {clip: diarizer.embed(samples) for clip, samples in audio.items()}
    same, different = [], []
    for first, second in itertools.combinations(CLIPS, 2):
        score = cosine(voices[first], voices[second])
        (same if voice_of(first) == voice_of(second) else different).append(score)
    print(
        f"cosine, whole clips: same speaker {min(same):.2f}-{max(same):.2f} ({len(same)} pairs), "
        f"different speakers {min(different):.2f}-{max(different):.2f} ({len(different)} pairs); "
        f"threshold {args.threshold:.2f}"
    )
    trials = run_trials(diarizer, audio, args.threshold)
    print(f"named right, one clip enrolled per speaker: {trials.right}/{trials.named}")
    print(f"left unnamed, the other speaker alone enrolled: {trials.unnamed}/{trials.strangers}")
    for enrolled, probe, given in trials.failures:
        print(f"  enrolled {', '.join(enrolled)}; {probe} named {sorted(given)}")
    print(f"\ncommand: python load/evaluate_known_speakers.py --threshold {args.threshold:g}")


if __name__ == "__main__":
    main()
