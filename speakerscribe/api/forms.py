"""The upload form of the transcription and job endpoints, read without Ray: a bounded
body, one file, OpenAI's list and nested field names."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message

from speakerscribe.errors import (
    InvalidRequestError,
    PayloadTooLargeError,
    SpeechServerError,
    UnsupportedMediaError,
)
from speakerscribe.protocol import LIST_FIELDS


def _with_body_limit(request: Request, limit: int) -> Request:
    """The same request, but reading its body stops with a 413 once past ``limit`` bytes.

    Covers chunked uploads and lying Content-Length headers; the multipart parser
    never sees more than the limit.
    """
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise PayloadTooLargeError(f"upload is over the {limit} byte limit", param="file")
        return message

    return Request(request.scope, receive)


async def read_upload_form(request: Request, max_upload_bytes: int) -> tuple[dict[str, Any], bytes]:
    """Multipart form → (fields, file bytes): the declared size is checked before the body
    is read, the bytes received while it is read, and OpenAI's ``name[]`` list fields and
    ``parent[child]`` nested fields are gathered as the request models expect."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise UnsupportedMediaError(
            "send the audio as multipart/form-data with a 'file' field", param="file"
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_upload_bytes:
        raise PayloadTooLargeError(
            f"upload of {int(declared)} bytes is over the {max_upload_bytes} byte limit",
            param="file",
        )
    fields: dict[str, Any] = {}
    data: bytes | None = None
    request = _with_body_limit(request, max_upload_bytes)
    try:
        # text fields hold known speakers' reference clips as data URLs (10 s of CD audio:
        # 2.4 MB)
        async with request.form(max_files=1, max_fields=64, max_part_size=8 * 1024 * 1024) as form:
            for key in form.keys():
                name = key.removesuffix("[]")
                values = form.getlist(key)
                if name == "file":
                    upload = values[-1]
                    if not isinstance(upload, UploadFile):
                        raise InvalidRequestError("'file' must be a file upload", param="file")
                    data = await upload.read()
                elif name in LIST_FIELDS:
                    fields.setdefault(name, []).extend(values)
                elif "[" in name and name.endswith("]"):  # chunking_strategy[type]=server_vad
                    parent, child = name[:-1].split("[", 1)
                    nested = fields.setdefault(parent, {})
                    if not isinstance(nested, dict):
                        raise InvalidRequestError(f"{parent} is given twice", param=parent)
                    nested[child] = values[-1]
                else:
                    fields[name] = values[-1]
    except SpeechServerError:
        raise
    except Exception as error:  # malformed multipart bodies
        raise InvalidRequestError(f"could not parse the multipart form: {error}") from None
    if data is None:
        raise InvalidRequestError("the 'file' field is required", param="file")
    if len(data) > max_upload_bytes:
        raise PayloadTooLargeError(
            f"upload is over the {max_upload_bytes} byte limit", param="file"
        )
    return fields, data
