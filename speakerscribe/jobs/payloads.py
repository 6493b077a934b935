"""Where a job's audio and result bytes live: inline in its row when small, else a blob."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from speakerscribe.jobs.blobs import BlobStore


class Payloads:
    """Column values for a job's audio or result, and their bytes back from a row.

    Payloads over ``inline_max_bytes`` (most uploads) go to ``blobs`` and the row keeps
    their key.
    """

    def __init__(self, blobs: BlobStore, inline_max_bytes: int):
        self.blobs = blobs
        self.inline_max_bytes = inline_max_bytes

    def columns(self, kind: str, job_id: str, data: bytes) -> dict[str, Any]:
        """Column values for a payload: inline when small, else a blob and its key."""
        if len(data) <= self.inline_max_bytes:
            return {kind: data, f"{kind}_key": None}
        key = blob_key(kind, job_id)
        if kind == "result":  # one key per write: a late finish never overwrites a kept one
            key = f"{key}.{uuid.uuid4().hex[:12]}"
        self.blobs.put(key, data)
        return {kind: None, f"{kind}_key": key}

    def read(self, inline: bytes | None, key: str | None) -> bytes:
        if key is not None:
            return self.blobs.get(key)
        return bytes(inline or b"")

    def drop(self, keys: Iterable[str | None]) -> None:
        for key in keys:
            if key is not None:
                self.blobs.delete(key)

    def drop_audio(self, job_id: str) -> None:
        """The audio blob of an ended job: its key is gone from the row, the file goes too."""
        self.blobs.delete(blob_key("audio", job_id))


def blob_key(kind: str, job_id: str) -> str:
    return f"{kind}/{job_id}"
