"""Store directories that another process may hold: counting their rows and deleting
them only under their own locks.

A store directory holds one RocksDB row store per model. RocksDB locks a database
while a process has it open; deleting the files under that process corrupts it
(it keeps writing into files that are gone). So each database is opened — its
lock taken — before anything is read or deleted, and a held one is refused.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, cast

from rocksdict import AccessType, Options, Rdict

from store.errors import StoreError, StoreLockedError
from store.row_store import ROW


def _databases(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    candidates = [root, *(p for p in sorted(root.iterdir()) if p.is_dir())]
    return [p for p in candidates if (p / "CURRENT").exists()]


@contextmanager
def held(root: Path) -> Iterator[list[Rdict]]:
    """Every row store under `root`, open and locked for the duration."""
    with ExitStack() as stack:
        handles = []
        for path in _databases(root):
            try:
                db = Rdict(str(path), options=Options(raw_mode=True), access_type=_RW)
            except Exception as exc:
                if "lock" in str(exc).lower():
                    raise StoreLockedError(
                        f"the store at {path} is open in another process: stop it first, or "
                        "give this run its own store directory"
                    ) from exc
                raise StoreError(
                    f"cannot open the store at {path}: {exc}; restore it from a snapshot, or "
                    "delete it to start over"
                ) from exc
            stack.callback(db.close)
            handles.append(db)
        yield handles


_RW = AccessType.read_write()


def stored_rows(root: Path) -> int:
    """Embedding rows kept under `root` (0 when there is no store)."""
    with held(root) as handles:
        total = 0
        for db in handles:
            keys: Iterator[bytes] = cast(Any, db).keys(from_key=ROW)
            for key in keys:
                if not key.startswith(ROW):
                    break
                total += 1
        return total


def remove(root: Path) -> None:
    """Deletes the store directory `root`, holding every lock in it while it does, so a
    process that has it open is refused rather than corrupted."""
    if not root.exists():
        return
    with held(root):
        try:
            shutil.rmtree(root)
        except OSError as exc:
            raise StoreError(f"cannot delete the store at {root}: {exc}") from exc
