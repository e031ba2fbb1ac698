"""Files that readers see whole: written beside, then renamed into place."""

from __future__ import annotations

import os
from pathlib import Path


def replace_bytes(path: Path, data: bytes) -> None:
    """`path` holds `data`, or what it held before, even across a crash: never a
    half-written file (flushed to disk before the rename)."""
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    partial.replace(path)


def replace_text(path: Path, text: str) -> None:
    replace_bytes(path, text.encode())
