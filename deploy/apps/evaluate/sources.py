"""Labeled events for the evaluator: the `labeled` topic, in both of its formats."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Protocol

from stream.errors import RecordError
from stream.events import LabeledEvent, decode_labeled_record
from stream.kafka.labeled_reader import LabeledRecord

log = logging.getLogger(__name__)
_POLL_MS = 200


class Reader(Protocol):
    partitions: tuple[int, ...]

    def poll(self, timeout_ms: int) -> list[LabeledRecord]: ...
    def lag(self) -> dict[int, int]: ...


def decoded(records: list[LabeledRecord], skipped: Counter[str]) -> list[LabeledEvent]:
    """The records' events; what does not decode is counted by reason and skipped (the
    trainer dead-lettered it: the evaluator judges the events the model could learn)."""
    out: list[LabeledEvent] = []
    for record in records:
        try:
            items = decode_labeled_record(record.value, record.headers)
        except RecordError as exc:
            skipped[exc.reason] += 1
            continue
        for item in items:
            if isinstance(item, RecordError):
                skipped[item.reason] += 1
            else:
                out.append(item)
    return out


def until_caught_up(
    reader: Reader,
    skipped: Counter[str],
    idle_s: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[list[LabeledEvent]]:
    """Batches of events from the reader's position until it has read every partition
    to its end, or nothing came for `idle_s` (an open transaction holds the end back)."""
    quiet_since = clock()
    while True:
        records = reader.poll(_POLL_MS)
        if records:
            quiet_since = clock()
            yield decoded(records, skipped)
            continue
        lag = reader.lag()  # known once a fetch has returned each partition's end
        caught_up = len(lag) == len(reader.partitions) and not any(lag.values())
        if caught_up or clock() - quiet_since > idle_s:
            return
