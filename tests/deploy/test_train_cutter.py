"""Cutting labeled records into training batches: positions, resume, dead letters."""

from __future__ import annotations

import orjson

from deploy.apps.train.cutter import Cutter
from stream.events import DAY_MS, LabeledEvent, encode_labeled, encode_labeled_batch
from stream.kafka.labeled_reader import LabeledRecord

T0 = 1_700_000_000_000
HOUR = 3_600_000


class Dead:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, dict[str, bytes]]] = []

    def send(self, value: bytes | None, headers: list[tuple[str, bytes]], timestamp: int) -> None:
        self.sent.append((value, dict(headers)))


def _event(i: int, ts: int = T0) -> LabeledEvent:
    return LabeledEvent(f"e{i}", ts + i, i % 2, None, {"f": f"v{i}"})


def _batch(partition: int, offset: int, events: list[LabeledEvent]) -> LabeledRecord:
    value, headers = encode_labeled_batch(events)
    return LabeledRecord(partition, offset, T0, value, tuple(headers))


def _single(partition: int, offset: int, event: LabeledEvent) -> LabeledRecord:
    return LabeledRecord(partition, offset, T0, encode_labeled(event), ())


def test_a_cut_inside_a_batch_record_resumes_at_the_next_event_of_it() -> None:
    dead = Dead()
    cutter = Cutter({}, 24 * HOUR, dead, "labeled")
    cutter.add(_batch(0, 0, [_event(i) for i in range(5)]))
    cutter.add(_single(1, 7, _event(5)))
    first = cutter.cut(3)
    assert [e.id for e in first.events] == ["e0", "e1", "e2"]
    assert first.after == {0: (0, 3)}
    rest = cutter.cut(10)
    assert [e.id for e in rest.events] == ["e3", "e4", "e5"]
    assert rest.after == {0: (1, 0), 1: (8, 0)}

    # A trainer resuming at (0, 3) learns e3 and e4 of that record, never e0-e2.
    again = Cutter(first.after, 24 * HOUR, dead, "labeled")
    again.add(_batch(0, 0, [_event(i) for i in range(5)]))
    assert [e.id for e in again.cut(10).events] == ["e3", "e4"]
    assert dead.sent == []


def test_bad_events_are_dead_lettered_alone_and_still_move_the_position() -> None:
    dead = Dead()
    cutter = Cutter({}, 24 * HOUR, dead, "labeled")
    good = orjson.loads(encode_labeled(_event(1)))
    value = orjson.dumps([good, {"id": "x", "ts": T0, "label": 7, "features": {}}, good])
    cutter.add(LabeledRecord(2, 4, T0, value, (("fmstream.format", b"labeled-batch/1"),)))
    cutter.add(LabeledRecord(2, 5, T0, b"{not json", ()))
    cut = cutter.cut(10)
    assert len(cut.events) == 2
    assert cut.after == {2: (6, 0)}
    assert cut.dead == {"wrong_type": 1, "invalid_json": 1}
    (one, one_headers), (whole, whole_headers) = dead.sent
    assert orjson.loads(one or b"")["label"] == 7  # the bad event alone, not its batch
    assert one_headers["fmstream.source.index"] == b"1"
    assert one_headers["fmstream.source.offset"] == b"4"
    assert whole == b"{not json" and "fmstream.source.index" not in whole_headers


def test_events_far_behind_the_stream_or_ahead_of_their_record_are_dead_lettered() -> None:
    dead = Dead()
    cutter = Cutter({}, HOUR, dead, "labeled")
    cutter.add(_single(0, 0, _event(0, T0)))
    cutter.add(_single(0, 1, _event(1, T0 - 2 * HOUR)))  # behind the newest by 2 h
    cutter.add(_single(0, 2, _event(2, T0 + 3 * HOUR)))  # after its broker time by 3 h
    cut = cutter.cut(10)
    assert [e.id for e in cut.events] == ["e0"]
    assert cut.dead == {"ts_out_of_range": 2}
    assert cut.after == {0: (3, 0)}


def test_an_unknown_batch_format_is_dead_lettered_whole() -> None:
    dead = Dead()
    cutter = Cutter({}, HOUR, dead, "labeled")
    cutter.add(LabeledRecord(0, 0, T0, b"[]", (("fmstream.format", b"labeled-batch/9"),)))
    cut = cutter.cut(10)
    assert cut.events == [] and cut.after == {0: (1, 0)}
    assert dead.sent[0][1]["fmstream.error"] == b"unknown_format"


def test_a_resumed_cutter_judges_skew_from_the_newest_event_learned_before() -> None:
    dead = Dead()
    cutter = Cutter({0: (5, 0)}, HOUR, dead, "labeled", newest_ts=T0)
    cutter.add(_single(0, 5, _event(0, T0 - 2 * HOUR)))
    assert cutter.cut(10).dead == {"ts_out_of_range": 1}


def test_the_first_event_of_a_new_day_starts_a_batch() -> None:
    midnight = (T0 // DAY_MS + 1) * DAY_MS
    before = [_event(i, midnight - 100) for i in range(3)]
    after = [_event(i, midnight) for i in range(3, 5)]
    late = _event(5, midnight - 50)  # an earlier day's event after the crossing
    cutter = Cutter({}, 24 * HOUR, Dead(), "labeled")
    cutter.add(_batch(0, 0, [*before, *after, late, _event(6, midnight + 1)]))
    first = cutter.cut(10)
    assert [e.id for e in first.events] == ["e0", "e1", "e2"]
    assert first.after == {0: (0, 3)}
    assert [e.id for e in cutter.cut(10).events] == ["e3", "e4", "e5", "e6"]

    # A resumed cutter knows the day it stood in: no batch reaches back over midnight.
    resumed = Cutter({0: (1, 0)}, 24 * HOUR, Dead(), "labeled", newest_ts=midnight - 1)
    resumed.add(_batch(0, 1, [_event(7, midnight - 10), _event(8, midnight + 6)]))
    assert [e.id for e in resumed.cut(10).events] == ["e7"]
    assert [e.id for e in resumed.cut(10).events] == ["e8"]
