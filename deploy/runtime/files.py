"""Files that readers see whole: written beside, then renamed into place."""

from __future__ import annotations

from pathlib import Path


def replace_text(path: Path, text: str) -> None:
    """`path` holds `text`, or what it held before: never a half-written file."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.replace(path)
