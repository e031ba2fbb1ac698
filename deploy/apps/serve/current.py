"""The snapshot a worker serves now, swapped by one reference.

A request leases the snapshot it starts with and keeps it to the end; a swap
only changes what the next lease gets, and the snapshot swapped out is closed
once its last lease is returned.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from deploy.apps.serve.snapshot import Loaded


class NotReady(Exception):
    """No snapshot is loaded yet."""


class Current:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: Loaded | None = None
        self._leases: dict[int, int] = {}  # id(Loaded) -> leases out
        self._retired: dict[int, Loaded] = {}

    @property
    def loaded(self) -> Loaded | None:
        return self._loaded

    @property
    def version(self) -> int | None:
        loaded = self._loaded
        return loaded.version if loaded is not None else None

    @contextmanager
    def lease(self) -> Iterator[Loaded]:
        with self._lock:
            loaded = self._loaded
            if loaded is None:
                raise NotReady("no snapshot is loaded yet")
            key = id(loaded)
            self._leases[key] = self._leases.get(key, 0) + 1
        try:
            yield loaded
        finally:
            self._give_back(key)

    def swap(self, new: Loaded) -> Loaded | None:
        """Serves `new` from the next lease on; returns the snapshot it replaced."""
        return self._replace(new)

    def close(self) -> None:
        self._replace(None)

    def _replace(self, new: Loaded | None) -> Loaded | None:
        """The old snapshot is retired: closed now, or by its last lease."""
        with self._lock:
            old, self._loaded = self._loaded, new
            if old is not None:
                self._retired[id(old)] = old
        if old is not None:
            self._give_back(id(old), lease=False)
        return old

    def _give_back(self, key: int, lease: bool = True) -> None:
        with self._lock:
            if lease:
                self._leases[key] -= 1
            if self._leases.get(key, 0) > 0 or key not in self._retired:
                return
            self._leases.pop(key, None)
            done = self._retired.pop(key)
        done.close()
