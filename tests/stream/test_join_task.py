"""A join task's outputs: labeled events packed into example batches, each its own
numbered record, in join order; `labeled_batch_max` 1 writes plain keyed events."""

from __future__ import annotations

import orjson

from stream.events import (
    FORMAT_HEADER,
    IMPRESSIONS,
    LABELED_BATCH_V1,
    LabeledEvent,
    decode_labeled_record,
)
from stream.join.core import JoinConfig
from stream.join.records import CORRECTIONS, LABELED, SEQ_HEADER, InRecord, OutRecord
from stream.join.task import JoinTask, TaskConfig

T0 = 1_780_000_000_000
W = 10_000


def _task(batch_max: int, batch_bytes: int = 1 << 20) -> JoinTask:
    join = JoinConfig(window_ms=W, allowed_lateness_ms=0, orphan_grace_ms=0)
    config = TaskConfig(join, labeled_batch_max=batch_max, labeled_batch_bytes=batch_bytes)
    return JoinTask(0, config, {IMPRESSIONS: "imp", "clicks": "clk"})


def _impressions(task: JoinTask, n: int, pad: str = "") -> list[OutRecord]:
    records = [
        InRecord(
            IMPRESSIONS,
            0,
            i,
            None,
            orjson.dumps({"id": f"i{i}", "ts": T0 + i, "features": {"ad": f"a{i}{pad}"}}),
            T0 + i,
        )
        for i in range(n)
    ]
    # The last impression and a click move event time past every window but its own.
    far = orjson.dumps({"id": "far", "ts": T0 + n + W + 1, "features": {"ad": "x"}})
    records.append(InRecord(IMPRESSIONS, 0, n, None, far, T0 + n + W + 1))
    click = orjson.dumps({"id": "orphan", "ts": T0 + n + W + 2})
    records.append(InRecord("clicks", 0, 0, b"orphan", click, T0 + n + W + 2))
    out = task.process(records)
    return task.entry(out).outbox


def _events(outbox: list[OutRecord]) -> list[LabeledEvent]:
    events = []
    for record in outbox:
        for item in decode_labeled_record(record.value, record.headers):
            assert isinstance(item, LabeledEvent)
            events.append(item)
    return events


def test_labels_are_packed_in_batches_of_at_most_the_maximum_in_join_order() -> None:
    outbox = _impressions(_task(batch_max=4), 10)
    assert [o.topic for o in outbox] == [LABELED] * 3
    assert all(dict(o.headers)[FORMAT_HEADER] == LABELED_BATCH_V1 for o in outbox)
    assert [len(orjson.loads(o.value or b"")) for o in outbox] == [4, 4, 2]
    assert [e.id for e in _events(outbox)] == [f"i{i}" for i in range(10)]
    # One sequence number per record: recovery finds what landed record by record.
    seqs = [o.seq for o in outbox]
    assert seqs == sorted(set(seqs))
    assert [int(dict(o.headers)[SEQ_HEADER]) for o in outbox] == seqs
    assert [o.ts for o in outbox] == [T0 + 3, T0 + 7, T0 + 9]


def test_a_batch_is_cut_by_bytes_and_a_larger_event_is_a_batch_of_its_own() -> None:
    pad = "p" * 400
    outbox = _impressions(_task(batch_max=1_000, batch_bytes=1_000), 5, pad)
    sizes = [len(orjson.loads(o.value or b"")) for o in outbox]
    assert sum(sizes) == 5 and max(sizes) == 2
    assert all(len(o.value or b"") <= 1_000 for o in outbox)
    alone = _impressions(_task(batch_max=1_000, batch_bytes=100), 3, pad)
    assert [len(orjson.loads(o.value or b"")) for o in alone] == [1, 1, 1]


def test_batch_max_one_writes_plain_events_keyed_by_their_id() -> None:
    outbox = _impressions(_task(batch_max=1), 3)
    assert [o.key for o in outbox] == [b"i0", b"i1", b"i2"]
    assert all(FORMAT_HEADER not in dict(o.headers) for o in outbox)
    assert [e.id for e in _events(outbox)] == ["i0", "i1", "i2"]


def test_corrections_stay_one_per_record_beside_the_batches() -> None:
    task = _task(batch_max=100)
    _impressions(task, 2)
    late = orjson.dumps({"id": "i0", "ts": T0 + 2 * W})
    outbox = task.entry(task.process([InRecord("clicks", 0, 1, b"i0", late, T0 + 2 * W)])).outbox
    assert [(o.topic, o.key) for o in outbox] == [(CORRECTIONS, b"i0")]
    assert task.labels_waiting == 0
