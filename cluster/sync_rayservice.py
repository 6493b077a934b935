"""Copy serve_config.yaml into cluster/rayservice.yaml's serveConfigV2 (KubeRay).

    python cluster/sync_rayservice.py

tests/unit/test_configs.py fails while the two differ.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sync() -> None:
    config = (REPO / "serve_config.yaml").read_text()
    embedded = "".join(
        f"    {line}" if line.strip() else "\n" for line in config.splitlines(keepends=True)
    )
    manifest = REPO / "cluster/rayservice.yaml"
    text = manifest.read_text()
    block = re.compile(r"(  serveConfigV2: \|\n)(.*?)(\n  rayClusterConfig:)", re.S)
    if not block.search(text):
        raise SystemExit("serveConfigV2 block not found in cluster/rayservice.yaml")
    manifest.write_text(block.sub(lambda m: m.group(1) + embedded + m.group(3), text, count=1))


if __name__ == "__main__":
    sync()
