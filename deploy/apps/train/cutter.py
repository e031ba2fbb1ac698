"""Labeled records in, training batches out, each with the input position it reaches.

A position is, per partition, the next record offset and the index of the next
event within that record (one record can hold a batch of events). Records are
decoded into entries in arrival order: an event to learn, or a marker that only
moves the position (an event dead-lettered, an event learned before the resume
point, a record with no events). A batch takes entries from the front, so
within a partition positions only move forward and a batch's position covers
exactly the events it holds and those skipped before them.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from stream.errors import RecordError
from stream.events import DAY_MS, LabeledEvent, decode_labeled_record, encode_labeled
from stream.kafka.labeled_reader import LabeledRecord

# partition -> (next offset, index of the next event in that record)
Positions = dict[int, tuple[int, int]]


class DeadLetters(Protocol):
    """Where a record or event that cannot be learned goes, with why."""

    def send(
        self, value: bytes | None, headers: list[tuple[str, bytes]], timestamp: int
    ) -> None: ...


@dataclass
class Cut:
    """The events of one batch, where the input stands after them, and what was
    dead-lettered on the way (by reason)."""

    events: list[LabeledEvent]
    sources: list[tuple[int, int, int]]  # each event's (partition, offset, index)
    after: Positions
    dead: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class _Entry:
    source: tuple[int, int, int]
    after: tuple[int, int]
    event: LabeledEvent | None


class Cutter:
    def __init__(
        self,
        start: Mapping[int, tuple[int, int]],
        max_skew_ms: int,
        dead: DeadLetters,
        topic: str,
        newest_ts: int | None = None,
    ) -> None:
        """`start`: the resume point; events before it are skipped, never learned.
        `newest_ts`: the newest event time learned before it, which skew is judged from."""
        self._start = dict(start)
        self._max_skew_ms = max_skew_ms
        self._dead = dead
        self._topic = topic
        self._entries: deque[_Entry] = deque()
        self._events = 0
        self._reasons: Counter[str] = Counter()
        self.newest_ts = newest_ts
        # The newest event day cut so far: a batch never reaches past it into the next.
        self._cut_day = newest_ts // DAY_MS if newest_ts is not None else None

    @property
    def pending(self) -> int:
        """Events waiting to be cut."""
        return self._events

    @property
    def holds_entries(self) -> bool:
        return bool(self._entries)

    def add(self, record: LabeledRecord) -> None:
        first = self._first_index(record)
        if first is None:
            return
        try:
            items = decode_labeled_record(record.value, record.headers)
        except RecordError as exc:
            self._count(record, -1, record.value, exc)
            self._push((record.partition, record.offset, 0), (record.offset + 1, 0), None)
            return
        for index, item in enumerate(items):
            if index < first:
                continue
            after = (record.offset, index + 1) if index + 1 < len(items) else (record.offset + 1, 0)
            self._push(
                (record.partition, record.offset, index), after, self._check(record, index, item)
            )
        if not items:
            self._push((record.partition, record.offset, 0), (record.offset + 1, 0), None)

    def _check(
        self, record: LabeledRecord, index: int, item: LabeledEvent | RecordError
    ) -> LabeledEvent | None:
        """The event to learn, or None when it is dead-lettered instead."""
        if isinstance(item, RecordError):
            self._count(record, index, item.value, item)
            return None
        why = self._skewed(item, record.timestamp)
        if why is not None:
            self._count(record, index, encode_labeled(item), why)
            return None
        self.newest_ts = max(self.newest_ts or item.ts, item.ts)
        return item

    def _first_index(self, record: LabeledRecord) -> int | None:
        """The first event of `record` to take; None when the record is before the start."""
        start = self._start.get(record.partition)
        if start is None or record.offset > start[0]:
            return 0
        if record.offset < start[0]:
            return None
        return start[1]

    def _skewed(self, event: LabeledEvent, broker_ts: int) -> RecordError | None:
        skew = self._max_skew_ms
        if self.newest_ts is not None and event.ts < self.newest_ts - skew:
            return RecordError(
                "ts_out_of_range",
                f"event time {event.ts} is more than {skew} ms behind the stream's newest "
                f"({self.newest_ts})",
            )
        if broker_ts >= 0 and event.ts > broker_ts + skew:
            return RecordError(
                "ts_out_of_range",
                f"event time {event.ts} is more than {skew} ms after its record's broker "
                f"timestamp {broker_ts}",
            )
        return None

    def _count(
        self, record: LabeledRecord, index: int, value: bytes | None, exc: RecordError
    ) -> None:
        self._reject(record, index, value, exc)
        self._reasons[exc.reason] += 1

    def _reject(
        self, record: LabeledRecord, index: int, value: bytes | None, exc: RecordError
    ) -> None:
        """Dead-letters a whole record (index -1, its own bytes) or one of its events."""
        headers = [
            ("fmstream.error", exc.reason.encode()),
            ("fmstream.error.message", str(exc).encode()),
            ("fmstream.source.topic", self._topic.encode()),
            ("fmstream.source.partition", str(record.partition).encode()),
            ("fmstream.source.offset", str(record.offset).encode()),
        ]
        if index >= 0:
            headers.append(("fmstream.source.index", str(index).encode()))
        else:
            headers += [h for h in record.headers if not h[0].startswith("fmstream.error")]
        self._dead.send(record.value if index < 0 else value, headers, record.timestamp)

    def _push(
        self, source: tuple[int, int, int], after: tuple[int, int], event: LabeledEvent | None
    ) -> None:
        self._entries.append(_Entry(source, after, event))
        self._events += event is not None

    def cut(self, limit: int) -> Cut:
        """Up to `limit` events from the front, with every marker before the next event.
        The first event of a new event day starts a batch: what was learned before it
        is the model at that day's end (late events of earlier days may come after)."""
        events: list[LabeledEvent] = []
        sources: list[tuple[int, int, int]] = []
        after: Positions = {}
        entries = self._entries
        while entries and (entries[0].event is None or len(events) < limit):
            event = entries[0].event
            if event is not None:
                day = event.ts // DAY_MS
                newest = day if self._cut_day is None else self._cut_day
                if events and day > newest:
                    break
                self._cut_day = max(day, newest)
            entry = entries.popleft()
            if event is not None:
                events.append(event)
                sources.append(entry.source)
            after[entry.source[0]] = entry.after
        self._events -= len(events)
        dead, self._reasons = self._reasons, Counter()
        return Cut(events, sources, after, dead)

    def reject(self, event: LabeledEvent, source: tuple[int, int, int], exc: RecordError) -> None:
        """Dead-letters an event found bad after it was cut (its features do not fit
        the schema); `source` is its (partition, offset, index). The caller counts it."""
        partition, offset, index = source
        record = LabeledRecord(partition, offset, event.ts, None, ())
        self._reject(record, index, encode_labeled(event), exc)
