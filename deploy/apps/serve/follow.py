"""Moving a worker to each newly promoted snapshot.

`LATEST` is the truth: every `poll_s`, and whenever an announcement on the
snapshots topic wakes it, the follower reads it and, if it names another
version than the one served (newer, or older after a rollback), loads that one
beside the current one, verifies and warms it, then swaps. A snapshot that
fails is logged, counted and skipped, then tried again after `RETRY_POLLS` polls
(in case what failed was passing: a disk, a file system); the worker keeps what
it serves.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from deploy.apps.serve.current import Current
from deploy.apps.serve.snapshot import Loaded, SnapshotError, latest
from stream.errors import BrokerError

log = logging.getLogger(__name__)
RETRY_POLLS = 12
LOADER_NICE = 10


def _yield_to_requests() -> None:
    """Loading the next snapshot (hashing, opening, warming) runs below the request
    loop's CPU priority: a worker has one core, and a swap must not queue requests
    behind it. Linux sets a nice value per thread; elsewhere nothing changes."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOADER_NICE)


class SwapMetrics(Protocol):
    def swapped(self, loaded: Loaded) -> None: ...
    def swap_failed(self, reason: str) -> None: ...


class Follower:
    def __init__(
        self,
        model_dir: Path,
        current: Current,
        load: Callable[[int], Loaded],
        warm: Callable[[Loaded], None],
        poll_s: float,
        metrics: SwapMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dir = model_dir
        self._current = current
        self._load = load
        self._warm = warm
        self._poll_s = poll_s
        self._metrics = metrics
        self._clock = clock
        self._failed: dict[int, float] = {}  # version -> when it failed
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fmstream-serve-follow", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        _yield_to_requests()
        while not self._stopping.is_set():
            try:
                self.check()
            except Exception:  # a bug must not stop the follower; the worker serves on
                log.exception("snapshot_check_failed")
            self._wake.wait(self._poll_s)
            self._wake.clear()

    def check(self) -> bool:
        """Loads and swaps to the version LATEST names if it is not the one served;
        whether it swapped."""
        try:
            version = latest(self._dir)
        except SnapshotError as exc:
            self._fail("latest", str(exc))
            return False
        if version is None or version == self._current.version or self._resting(version):
            return False
        try:
            loaded = self._load(version)
        except SnapshotError as exc:
            self._failed[version] = self._clock()
            self._fail("load", f"snapshot {version} is skipped: {exc}")
            return False
        try:
            self._warm(loaded)
        except Exception as exc:
            loaded.close()
            self._failed[version] = self._clock()
            self._fail("warm", f"snapshot {version} failed to score while warming: {exc}")
            return False
        old = self._current.swap(loaded)
        self._metrics.swapped(loaded)
        log.info(
            "snapshot_swapped: now serving %s (was %s)",
            version,
            old.version if old is not None else "none",
        )
        return True

    def _resting(self, version: int) -> bool:
        """Whether `version` failed less than `RETRY_POLLS` polls ago."""
        failed = self._failed.get(version)
        return failed is not None and self._clock() - failed < RETRY_POLLS * self._poll_s

    def _fail(self, reason: str, message: str) -> None:
        self._metrics.swap_failed(reason)
        log.error("snapshot_swap_failed: %s", message)


class Reader(Protocol):
    def seek_to_end(self) -> None: ...
    def poll(self, timeout_ms: int) -> Sequence[object]: ...
    def close(self) -> None: ...


class Announcements:
    """Wakes the follower when something is announced on the snapshots topic. A broker
    that is away is retried every `retry_s` (logged once per state change); the
    follower's own polling covers the gap."""

    def __init__(self, open_reader: Callable[[], Reader], wake: Callable[[], None], retry_s: float):
        self._open = open_reader
        self._wake = wake
        self._retry_s = retry_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="fmstream-serve-announce", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        connected: bool | None = None
        while not self._stopping.is_set():
            try:
                reader = self._open()
            except BrokerError as exc:
                if connected is not False:
                    log.warning("announcements_unavailable: polling LATEST only (%s)", exc)
                connected = False
                self._stopping.wait(self._retry_s)
                continue
            if connected is False:
                log.info("announcements_available: following the snapshots topic again")
            connected = True
            try:
                self._follow(reader)
            except BrokerError as exc:
                log.warning("announcements_unavailable: polling LATEST only (%s)", exc)
                connected = False
            finally:
                reader.close()

    def _follow(self, reader: Reader) -> None:
        reader.seek_to_end()
        self._wake()  # anything announced before the seek is in LATEST already
        while not self._stopping.is_set():
            if reader.poll(500):
                self._wake()
