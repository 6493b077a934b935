"""Online speaker labels for one live stream: voices clustered as segments arrive.

The thresholds are cosines between CAM++ embeddings (what live sessions embed with);
``load/evaluate_live_speakers.py`` measures them against reference labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from speakerscribe.alignment import letter_label

DEFAULT_SPEAKER_THRESHOLD = 0.6
"""Cosine to a speaker's nearest sub-centroid from which a segment joins and updates it:
a short segment scores its own speaker just above it, another one (even a second voice
on the same phone line) just below."""
NEW_SPEAKER_THRESHOLD = 0.5
"""Below this against every speaker a segment is clearly another voice and opens one;
between it and ``DEFAULT_SPEAKER_THRESHOLD`` it only takes the nearest label."""
DEFAULT_KNOWN_SPEAKER_THRESHOLD = 0.6
"""Cosine to an enrolled reference from which a segment takes its name: between what the
same person scores and what other people score against the reference."""
MERGE_THRESHOLD = 0.8
"""Two speakers whose mean voices come this close are one, as the batch pipeline merges."""
SUBCENTROID_THRESHOLD = 0.7
"""A joining segment this unlike each of its speaker's sub-centroids starts another: the
same voice in another condition (pitch, loudness, line) stays one speaker."""
MAX_SUBCENTROIDS = 3
"""Sub-centroids per speaker: a few conditions, without one speaker covering every voice."""
MIN_NEW_SPEAKER_S = 1.0
"""Shorter segments embed too noisily to open, confirm or update a speaker: they join
the nearest one."""
CONFIRM_SPEAKER_THRESHOLD = 0.7
"""A pending voice becomes a speaker when a later segment matches it this closely (and
closer than any speaker): two segments of one voice; two voices on one line stay under."""
MAX_PENDING_VOICES = 4
"""Unconfirmed voices kept, the latest ones."""


class _Voice:
    """Running sums of unit embeddings: up to ``MAX_SUBCENTROIDS`` sub-centroids, the whole."""

    def __init__(self, unit: np.ndarray):
        self.sums = [unit.copy()]
        self.total = unit.copy()

    def centroids(self) -> np.ndarray:
        sums = np.stack(self.sums)
        return sums / np.linalg.norm(sums, axis=1, keepdims=True).clip(min=1e-12)

    def mean(self) -> np.ndarray:
        return self.total / max(float(np.linalg.norm(self.total)), 1e-12)

    def similarity(self, unit: np.ndarray) -> float:
        """Cosine to the nearest sub-centroid."""
        return float((self.centroids() @ unit).max())

    def add(self, vector: np.ndarray) -> None:
        """A unit embedding (or another voice's sub-centroid sum) joins the nearest
        sub-centroid, or starts one if it is unlike all and there is room."""
        similarities = self.centroids() @ (vector / max(float(np.linalg.norm(vector)), 1e-12))
        nearest = int(np.argmax(similarities))
        if similarities[nearest] < SUBCENTROID_THRESHOLD and len(self.sums) < MAX_SUBCENTROIDS:
            self.sums.append(vector.copy())
        else:
            self.sums[nearest] = self.sums[nearest] + vector
        self.total = self.total + vector

    def absorb(self, other: _Voice) -> None:
        total = self.total + other.total
        for part in other.sums:
            self.add(part)
        self.total = total


class SpeakerTracker:
    """Online clustering of one stream's voices into speakers, relabel-free.

    Each speaker holds a few sub-centroids. A segment joins the speaker whose nearest
    sub-centroid is most similar at ``threshold`` or above; a long one clearly unlike
    every speaker (below ``new_speaker_threshold``) opens a new one. One in between
    takes the nearest label without changing that voice and waits as a pending voice:
    a later segment closer to it than to any speaker, at ``confirm_threshold``, makes it
    a new speaker. Short segments never open, confirm or update a speaker. Speakers
    whose mean voices converge (``merge_threshold``) merge into the older one: labels
    already given stay as they were, later segments of either get the older label.

    At most ``max_speakers`` identities; once full, a segment goes to the closest one.
    Enrolled voices (``enroll``) are matched first, at ``known_threshold``.
    """

    def __init__(
        self,
        threshold: float = DEFAULT_SPEAKER_THRESHOLD,
        max_speakers: int = 20,
        known_threshold: float = DEFAULT_KNOWN_SPEAKER_THRESHOLD,
        *,
        new_speaker_threshold: float = NEW_SPEAKER_THRESHOLD,
        confirm_threshold: float = CONFIRM_SPEAKER_THRESHOLD,
        merge_threshold: float = MERGE_THRESHOLD,
        min_new_speaker_s: float = MIN_NEW_SPEAKER_S,
    ):
        self.threshold = threshold
        self.new_speaker_threshold = min(new_speaker_threshold, threshold)
        self.confirm_threshold = confirm_threshold
        self.merge_threshold = merge_threshold
        self.min_new_speaker_s = min_new_speaker_s
        self.max_speakers = max_speakers
        self.known_threshold = known_threshold
        # label → voice, in the order the labels were given; None: named before any voice
        self._voices: dict[str, _Voice | None] = {}
        self._pending: list[_Voice] = []
        self._letters = 0
        self._known_names: list[str] = []
        self._known = np.zeros((0, 0), np.float32)
        self.last: str | None = None

    def __len__(self) -> int:
        """Speakers (letters) of the stream now, merged ones counted once."""
        return len(self._voices)

    def enroll(self, voices: dict[str, np.ndarray]) -> None:
        """Enrolled voices by name (replacing earlier ones): a segment whose voice matches
        one at ``known_threshold`` or above takes its name; the others get letters."""
        self._known_names = list(voices)
        units = [v / np.linalg.norm(v) for v in voices.values()]
        self._known = np.stack(units) if units else np.zeros((0, 0), np.float32)

    def assign(self, embedding: np.ndarray, seconds: float = float("inf")) -> str:
        """The speaker of a segment of ``seconds`` with this voice embedding."""
        unit = embedding / np.linalg.norm(embedding)
        if self._known_names:
            similarities = self._known @ unit
            best_known = int(np.argmax(similarities))
            if similarities[best_known] >= self.known_threshold:
                self.last = self._known_names[best_known]
                return self.last
        long = seconds >= self.min_new_speaker_s
        voiced = {label: voice for label, voice in self._voices.items() if voice is not None}
        if not voiced:  # the first voice of the stream, or a letter given without one
            label = next(iter(self._voices), None) or self._new_label()
            self._voices[label] = _Voice(unit) if long else None
            self.last = label
            return label
        labels = list(voiced)
        scores = [voiced[label].similarity(unit) for label in labels]
        best, score = labels[int(np.argmax(scores))], max(scores)
        if long and len(self._voices) < self.max_speakers:
            pending = [voice.similarity(unit) for voice in self._pending]
            if pending and max(pending) >= max(self.confirm_threshold, score):
                voice = self._pending.pop(int(np.argmax(pending)))
                voice.add(unit)
                best = self._open(voice)
                best = self._merge(best)
                self.last = best
                return best
            if score < self.new_speaker_threshold:
                self.last = self._open(_Voice(unit))
                return self.last
        if long and score >= self.threshold:
            voiced[best].add(unit)
            best = self._merge(best)
        elif long:
            self._pending = [*self._pending, _Voice(unit)][-MAX_PENDING_VOICES:]
        self.last = best
        return best

    def fallback(self) -> str:
        """The previous speaker; the first one (without a voice yet) if nobody spoke."""
        if self.last is None:
            self.last = self._new_label()
            self._voices[self.last] = None  # the next embedding fills it
        return self.last

    def _new_label(self) -> str:
        self._letters += 1
        return letter_label(self._letters - 1)

    def _open(self, voice: _Voice) -> str:
        label = self._new_label()
        self._voices[label] = voice
        return label

    def _merge(self, label: str) -> str:
        """Merge converged speakers, each into the older one; what ``label`` is now."""
        while True:
            voiced = [(name, voice) for name, voice in self._voices.items() if voice is not None]
            if len(voiced) < 2:
                return label
            means = np.stack([voice.mean() for _, voice in voiced])
            similarity = np.triu(means @ means.T, k=1)
            older, newer = np.unravel_index(int(np.argmax(similarity)), similarity.shape)
            if similarity[older, newer] < self.merge_threshold:
                return label
            (kept, voice), (dropped, other) = voiced[older], voiced[newer]
            voice.absorb(other)
            del self._voices[dropped]
            if label == dropped:
                label = kept
            if self.last == dropped:
                self.last = kept


def _unit_or_none(embedding: Any) -> np.ndarray | None:
    if embedding is None:
        return None
    vector = np.asarray(embedding, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(vector))
    return vector / norm if np.isfinite(norm) and norm > 0 else None
