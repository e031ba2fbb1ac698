"""Helpers of the join daemon tests: produce inputs, read outputs, run a daemon in-process."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer
from prometheus_client import CollectorRegistry

from deploy.apps.join.clients import open_parts
from deploy.apps.join.daemon import JoinDaemon
from deploy.apps.join.metrics import JoinMetrics
from deploy.apps.join.recovery import JoinOutputs, SentOutputs
from deploy.settings.tables import JoinDaemonSettings, TopicSettings
from stream.errors import RecordError
from stream.events import LabeledEvent, decode_labeled_record
from stream.join.checkpoint import ChangelogRecord, ChangelogTail
from stream.join.core import JoinConfig, JoinerCore, join_raw
from stream.join.records import Entry, OutRecord
from stream.kafka.options import ClientOptions
from stream.simulate import SimulationConfig, Simulator

T0 = 1_780_000_000_000


class FakeClock:
    """A wall clock that moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class Inputs:
    def __init__(self, options: ClientOptions, topics: TopicSettings) -> None:
        self._topics = topics
        self._producer = KafkaProducer(**options.producer())

    def impression(self, rid: str, ts: int, partition: int = 0, **features: Any) -> None:
        value = orjson.dumps({"id": rid, "ts": ts, "features": features or {"ad": "a1"}})
        self.raw(self._topics.impressions, value, partition, rid, ts)

    def click(self, rid: str, ts: int, partition: int = 0) -> None:
        self.raw(self._topics.clicks, orjson.dumps({"id": rid, "ts": ts}), partition, rid, ts)

    def raw(
        self, topic: str, value: bytes, partition: int | None, key: str, ts: int | None
    ) -> None:
        self._producer.send(
            topic, key=key.encode(), value=value, partition=partition, timestamp_ms=ts
        )

    def flush(self) -> None:
        self._producer.flush()

    def close(self) -> None:
        self._producer.close()


def read_all(options: ClientOptions, topic: str, idle_ms: int = 1_500) -> list[Any]:
    consumer = KafkaConsumer(
        topic, **options.consumer(auto_offset_reset="earliest", consumer_timeout_ms=idle_ms)
    )
    try:
        return list(consumer)
    finally:
        consumer.close()


def labels_of(records: Iterable[Any]) -> dict[str, list[int]]:
    """Impression id -> every label the topic holds for it (one, if all is well)."""
    out: dict[str, list[int]] = {}
    for event in events_of(records):
        out.setdefault(event.id, []).append(event.label)
    return out


def events_of(records: Iterable[Any]) -> list[LabeledEvent]:
    """The labeled events of `labeled` records, in order (batches or one per record)."""
    out = []
    for r in records:
        for item in decode_labeled_record(r.value, tuple(r.headers or ())):
            assert isinstance(item, LabeledEvent), item
            out.append(item)
    return out


def daemon(
    options: ClientOptions,
    topics: TopicSettings,
    state: Path,
    join: JoinConfig | None = None,
    idle_timeout_s: float = 30.0,
    clock: Callable[[], float] = time.time,
    max_poll_records: int = 500,
    outputs: Callable[[JoinOutputs], JoinOutputs] | None = None,
    entered: bool = True,
    labeled_batch_max: int = 4,
    state_checkpoint_interval: int = 100,
) -> JoinDaemon:
    """A daemon over real clients, subscribed unless not `entered` (for `run`, which
    enters it itself); `outputs` may wrap its I/O. Close it when done. Its example
    batches are small, so a poll's labels span several records (and a send cut
    short lands some of them)."""
    settings = JoinDaemonSettings(
        group_id=f"g-{topics.impressions}",
        state_dir=state,
        idle_timeout_s=idle_timeout_s,
        metrics_port=0,
        max_poll_records=max_poll_records,
        labeled_batch_max=labeled_batch_max,
        state_checkpoint_interval=state_checkpoint_interval,
    )
    config = join or JoinConfig(window_ms=10_000, allowed_lateness_ms=1_000, orphan_grace_ms=2_000)
    parts = open_parts(options, topics, settings)
    if outputs is not None:
        parts = dataclasses.replace(parts, io=outputs(parts.io))
    d = JoinDaemon(parts, topics, config, settings, JoinMetrics(CollectorRegistry()), clock)
    return d.__enter__() if entered else d


class FailingOutputs:
    """The daemon's I/O, except that the first non-empty `send_outputs` sends only
    `keep` of its records and then raises `error` — a process killed mid-send
    (KeyboardInterrupt) or a send that timed out (BrokerError); `in_flight`: the
    error is raised by waiting for them instead (they were lost on the way)."""

    def __init__(
        self, real: JoinOutputs, keep: float, error: BaseException, in_flight: bool = False
    ) -> None:
        self._real = real
        self._keep = keep
        self._error = error
        self._in_flight = in_flight
        self.failed_with: list[int] = []

    def write_outputs(self, outboxes: Mapping[int, list[OutRecord]]) -> dict[int, dict[str, int]]:
        return self._real.write_outputs(outboxes)

    def send_outputs(self, outboxes: Mapping[int, list[OutRecord]]) -> SentOutputs:
        if self.failed_with or not any(outboxes.values()):
            return self._real.send_outputs(outboxes)
        self.failed_with.append(sum(len(outs) for outs in outboxes.values()))
        self._real.write_outputs(
            {p: outs[: int(len(outs) * self._keep)] for p, outs in outboxes.items()}
        )
        if self._in_flight:
            return _Lost(self._error)
        raise self._error

    def claim(self, partition: int) -> None:
        self._real.claim(partition)

    def release(self, partition: int) -> None:
        self._real.release(partition)

    def commit(self) -> None:
        self._real.commit()

    def write_entries(self, entries: list[Entry]) -> list[int]:
        return self._real.write_entries(entries)

    def append(self, partition: int, values: list[bytes]) -> list[int]:
        return self._real.append(partition, values)

    def changelog(self, partition: int, start: int) -> Iterator[tuple[int, ChangelogRecord]]:
        return self._real.changelog(partition, start)

    def tail(self, partition: int) -> ChangelogTail:
        return self._real.tail(partition)

    def landed(self, entry: Entry) -> set[int]:
        return self._real.landed(entry)

    def close(self) -> None:
        self._real.close()


class _Lost:
    def __init__(self, error: BaseException) -> None:
        self._error = error

    def wait(self) -> dict[int, dict[str, int]]:
        raise self._error


def run_until(d: JoinDaemon, done: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError("the daemon did not get there in time")
        d.step()


def impressions_with_clicks(send: Inputs, n: int, click_every: int) -> None:
    """Impressions i0..i{n-1}, every `click_every`-th clicked 5 ms later, on partition 0."""
    for i in range(n):
        send.impression(f"i{i}", T0 + i)
        if i % click_every == 0:
            send.click(f"i{i}", T0 + i + 5)
    send.flush()


def label_differences(got: dict[str, list[int]], want: dict[str, int]) -> dict[str, Any]:
    """What differs between the labels a topic holds and the expected ones, summarised —
    a 20,000-entry dict diff says nothing a reader can use."""
    missing = sorted(set(want) - set(got))
    doubled = sorted(k for k, v in got.items() if len(v) > 1)
    wrong = sorted(k for k, v in got.items() if k in want and v[0] != want[k])
    unexpected = sorted(set(got) - set(want))
    return {
        name: {"count": len(keys), "first": keys[:10]}
        for name, keys in (
            ("missing", missing),
            ("doubled", doubled),
            ("wrong", wrong),
            ("unexpected", unexpected),
        )
        if keys
    }


def offline_labels(sim: SimulationConfig, join: JoinConfig | None = None) -> dict[str, int]:
    """The simulated traffic joined in one process, in delivery order: what the daemon's
    labeled topic must hold for it."""
    core = JoinerCore(join or JoinConfig())
    labels: dict[str, int] = {}
    for day in Simulator(sim).run():
        for r in day.records:
            try:
                out = join_raw(core, r.topic, r.value)
            except RecordError:
                continue
            labels.update((o.id, o.label) for o in out if isinstance(o, LabeledEvent))
    labels.update((o.id, o.label) for o in core.flush() if isinstance(o, LabeledEvent))
    return labels
