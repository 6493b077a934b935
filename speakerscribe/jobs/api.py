"""The jobs API that the ingress routes delegate to: the store's calls off the event loop,
results decoded for rendering. Free of Ray."""

from __future__ import annotations

import asyncio
from typing import Any

from speakerscribe.formats import TranscriptionResult
from speakerscribe.jobs.codec import decode_result
from speakerscribe.jobs.store import JobStore
from speakerscribe.protocol import TranscriptionRequest, TranslationRequest


def request_for(task: str, form: dict) -> TranscriptionRequest:
    """The request a job's stored form stands for (translations as transcriptions)."""
    if task == "translate":
        return TranslationRequest.from_form(form).as_transcription()
    return TranscriptionRequest.from_form(form)


class JobsApi:
    """Each method is one short database call, run in a thread."""

    def __init__(self, store: JobStore):
        self.store = store

    async def submit(self, form: dict[str, Any], audio: bytes, **job: Any) -> dict[str, Any]:
        return await asyncio.to_thread(self.store.submit, form, audio, **job)

    async def get(self, job_id: str, viewer: str | None) -> dict[str, Any]:
        return await asyncio.to_thread(self.store.get, job_id, viewer)

    async def list(self, limit: int, viewer: str | None) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.store.list, limit, viewer)

    async def result(
        self, job_id: str, viewer: str | None
    ) -> tuple[dict[str, Any], TranscriptionResult, dict[str, Any]]:
        job, payload, form = await asyncio.to_thread(self.store.result, job_id, viewer)
        return job, await asyncio.to_thread(decode_result, payload), form

    async def cancel(self, job_id: str, viewer: str | None) -> dict[str, Any]:
        return await asyncio.to_thread(self.store.cancel, job_id, viewer)

    async def delete(self, job_id: str, viewer: str | None) -> dict[str, Any]:
        return await asyncio.to_thread(self.store.delete, job_id, viewer)
