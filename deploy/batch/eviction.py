"""Store eviction on an event-time schedule, for any run that trains through a store."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

from deploy.settings.train import EvictionPolicy
from store.row_store import Eviction

log = logging.getLogger(__name__)


@runtime_checkable
class Flushes(Protocol):
    """A source that holds rows back until told to persist them with a position."""

    def flush(self, position: Mapping[str, Any] | None = None) -> int: ...


@runtime_checkable
class Evicts(Flushes, Protocol):
    """A source whose stored rows can be dropped by TTL and count."""

    def evict(self, expire_before: int | None, max_rows: int | None) -> Eviction: ...


class Tally(Protocol):
    """Where a run keeps its eviction counts."""

    evicted_ttl: int
    evicted_max_rows: int
    stored_rows: int | None


class EvictionSchedule:
    """Due every `policy.every_ms` of event time, counted from the first event seen."""

    def __init__(self, policy: EvictionPolicy | None, next_ms: int | None = None) -> None:
        """`next_ms`: when the next eviction is due (a resumed run's `next_ms`)."""
        self.policy = policy
        self._next = next_ms

    @property
    def next_ms(self) -> int | None:
        return self._next

    def due(self, now: int) -> bool:
        policy = self.policy
        if policy is None:
            return False
        due = self._next
        if due is not None and now < due:
            return False
        self._next = (now // policy.every_ms + 1) * policy.every_ms
        return due is not None

    def evict_all(self, runs: Iterable[tuple[str, object, int, Tally]], now: int) -> None:
        """Evicts every (name, source, trained events, tally) run and adds to its tally."""
        for name, source, trained, tally in runs:
            result = self.evict(name, source, trained, now)
            if result is not None:
                tally.evicted_ttl += result.expired
                tally.evicted_max_rows += result.trimmed
                tally.stored_rows = result.remaining

    def evict(self, name: str, source: object, trained: int, now: int) -> Eviction | None:
        """Flushes `source` and drops its stale and surplus rows; None when it has no store."""
        policy = self.policy
        if policy is None or not isinstance(source, Evicts):
            return None
        source.flush({"trained_events": trained})
        return self.drop(name, source, now)

    def drop(self, name: str, source: Evicts, now: int) -> Eviction:
        """Drops the rows of `source` that are stale or surplus at event time `now`
        (flush it first: the store judges by its last-seen times)."""
        assert self.policy is not None, "no eviction policy"
        result = source.evict(self.policy.expire_before(now), self.policy.max_rows)
        log.info(
            "store_evicted model=%s expired=%d trimmed=%d remaining=%d",
            name,
            result.expired,
            result.trimmed,
            result.remaining,
        )
        return result
