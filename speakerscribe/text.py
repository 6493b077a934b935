"""Text helpers the server needs at run time (the scorers in ``scoring`` share them)."""

from __future__ import annotations

import re


def normalize_text(text: str) -> str:
    """Lower-case, no punctuation, single spaces: enough of Whisper's English normaliser for WER."""
    text = text.lower().replace("’", "'")
    text = re.sub(r"[^\w\s']", " ", text)
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)
    return re.sub(r"\s+", " ", text).strip()
