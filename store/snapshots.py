"""Numbered store snapshots in one directory: create (atomically), list, open, prune.

A snapshot is a RocksDB checkpoint made in `<root>/.<version>.partial` and
renamed to `<root>/<version>` only once complete, so a listing never shows a
half-written one. (The published model snapshot of DESIGN.md wraps one of these
with the dense weights and a manifest.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

from store.errors import StoreError
from store.row_store import RowStore


class Snapshots:
    def __init__(self, root: Path) -> None:
        self.root = root

    def create(self, store: RowStore, version: int) -> Path:
        final = self.root / f"{version:012d}"
        if final.exists():
            raise StoreError(f"snapshot {version} already exists at {final}")
        partial = self.root / f".{version:012d}.partial"
        shutil.rmtree(partial, ignore_errors=True)  # left by a crash mid-snapshot
        self.root.mkdir(parents=True, exist_ok=True)
        store.checkpoint(partial)
        partial.rename(final)
        return final

    def versions(self) -> list[int]:
        if not self.root.exists():
            return []
        return sorted(int(p.name) for p in self.root.iterdir() if p.name.isdigit())

    def open(self, version: int, width: int) -> RowStore:
        path = self.root / f"{version:012d}"
        if not path.exists():
            raise StoreError(f"no snapshot {version} under {self.root}; have {self.versions()}")
        return RowStore(path, width, read_only=True)

    def prune(self, keep: int) -> list[int]:
        """Deletes all but the newest `keep` snapshots (and crash leftovers); returns them."""
        if keep < 1:
            raise StoreError(f"keep at least one snapshot, got keep={keep}")
        doomed = self.versions()[:-keep]
        for version in doomed:
            shutil.rmtree(self.root / f"{version:012d}")
        for leftover in self.root.glob(".*.partial"):
            shutil.rmtree(leftover)
        return doomed
