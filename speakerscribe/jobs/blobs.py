"""Large job payloads (uploads, big results) as files: a local folder or any fsspec URL."""

from __future__ import annotations

import contextlib

import fsspec


class BlobStore:
    """Whole-object put/get/delete under one root (``/srv/data/blobs``, ``s3://bucket/jobs``).

    Keys are ``<kind>/<job id>``; a write lands under a temporary name first, so a reader
    never sees half a file.
    """

    def __init__(self, url: str):
        self.fs, root = fsspec.core.url_to_fs(url)
        self.root = root.rstrip("/")
        self.url = url

    def path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def put(self, key: str, data: bytes) -> None:
        path = self.path(key)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        partial = f"{path}.partial"
        self.fs.pipe_file(partial, data)
        self.fs.mv(partial, path)

    def get(self, key: str) -> bytes:
        return self.fs.cat_file(self.path(key))

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(key))

    def keys(self) -> list[str]:
        """Every stored key (for tests and for checking what a backup holds)."""
        if not self.fs.exists(self.root):
            return []
        found = self.fs.find(self.root)
        return sorted(p[len(self.root) + 1 :] for p in found if not p.endswith(".partial"))
