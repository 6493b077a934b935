"""A job's finished pieces, written to the store as they arrive, so that a later attempt
(after a runner, node or cluster loss) decodes only what is missing."""

from __future__ import annotations

import asyncio

from speakerscribe.chunking import Piece
from speakerscribe.jobs.codec import decode_segments, encode_segments
from speakerscribe.jobs.store import JobStore
from speakerscribe.types import Segment


def piece_key(track: int, piece: Piece) -> str:
    """Track and sample range: the same audio and settings cut the same pieces."""
    return f"{track}:{piece.start}:{piece.end}"


class PieceLedger:
    """``pipeline.stages.PieceCache`` over the job store; counts what it reused and kept."""

    def __init__(self, store: JobStore, job_id: str, saved: dict[str, bytes]):
        self.store = store
        self.job_id = job_id
        self.saved = saved
        self.total = 0
        self.done = 0
        self.reused = 0

    @classmethod
    async def load(cls, store: JobStore, job_id: str) -> PieceLedger:
        return cls(store, job_id, await asyncio.to_thread(store.pieces, job_id))

    def planned(self, pieces: int) -> None:
        self.total = pieces

    def reuse(self, track: int, piece: Piece) -> list[Segment] | None:
        payload = self.saved.get(piece_key(track, piece))
        if payload is None:
            return None
        self.reused += 1
        self.done += 1
        return decode_segments(payload)

    async def keep(self, track: int, piece: Piece, segments: list[Segment]) -> None:
        key, payload = piece_key(track, piece), encode_segments(segments)
        await asyncio.to_thread(self.store.save_piece, self.job_id, key, payload)
        self.done += 1

    def counts(self) -> tuple[int, int, int]:
        """(total, done, reused), as the job's heartbeat reports them."""
        return self.total, self.done, self.reused
