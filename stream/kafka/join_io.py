"""The join's Kafka I/O: changelog entries and outputs out, changelog and outputs
back in for recovery.

Outputs go to partition `p % partitions(topic)` of their topic, p being the
join task's partition, so with equal partition counts a labeled event lands on
the partition its impression came from. The producer never retries on its own
(`retries=0`): a retried send could land twice, so any failed send is handled
by the daemon's recovery, which reads what did land before sending the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from kafka.producer.future import FutureRecordMetadata

from stream.errors import BrokerError, JoinStateError
from stream.join.checkpoint import ChangelogRecord, ChangelogTail, base_of, decode_changelog
from stream.join.records import SEQ_HEADER, SRC_HEADER, Entry, OutRecord
from stream.kafka.options import ClientOptions

log = logging.getLogger(__name__)
_SEND_TIMEOUT_S = 60.0


class JoinIO:
    def __init__(
        self,
        options: ClientOptions,
        topics: Mapping[str, str],
        changelog: str,
        partitions: Mapping[str, int],
    ) -> None:
        """`topics` maps logical output names to topics; `partitions` counts every topic's
        partitions (outputs and the changelog)."""
        self._topics = dict(topics)
        self._changelog = changelog
        self._partitions = dict(partitions)
        self._servers = options.bootstrap_servers
        try:
            self._producer = KafkaProducer(
                **options.producer(
                    acks="all",
                    retries=0,
                    max_in_flight_requests_per_connection=1,
                    batch_size=512 * 1024,
                    max_request_size=16 * 1024 * 1024,
                )
            )
            self._reader = KafkaConsumer(**options.consumer(enable_auto_commit=False))
        except KafkaError as exc:
            raise BrokerError(f"cannot connect the joiner to {self._servers}: {exc}") from exc

    def output_partition(self, topic: str, task_partition: int) -> TopicPartition:
        name = self._topics[topic]
        return TopicPartition(name, task_partition % self._partitions[name])

    def write_entries(self, entries: list[Entry]) -> list[int]:
        """Sends each entry to its partition of the changelog and waits; their offsets."""
        futures = [
            self._send(self._changelog, e.partition, None, e.encode(), None, ()) for e in entries
        ]
        return [m.offset for m in self._wait(futures, self._changelog)]

    def append(self, partition: int, values: list[bytes]) -> list[int]:
        """Sends encoded records (checkpoint chunks, a mark) to a partition of the
        changelog, in order, and waits; their offsets."""
        futures = [self._send(self._changelog, partition, None, v, None, ()) for v in values]
        return [m.offset for m in self._wait(futures, f"{self._changelog}[{partition}]")]

    def write_outputs(self, task_partition: int, outs: list[OutRecord]) -> dict[str, int]:
        """Sends a task's outputs and waits; the new marks ("topic:partition" -> next offset)."""
        futures = []
        for o in outs:
            tp = self.output_partition(o.topic, task_partition)
            futures.append(self._send(tp.topic, tp.partition, o.key, o.value, o.ts, o.headers))
        marks: dict[str, int] = {}
        for meta in self._wait(futures, "the output topics"):
            key = f"{meta.topic}:{meta.partition}"
            marks[key] = max(marks.get(key, 0), meta.offset + 1)
        return marks

    def _send(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        ts: int | None,
        headers: tuple[tuple[str, bytes], ...],
    ) -> FutureRecordMetadata:
        try:
            return self._producer.send(
                topic,
                key=key,
                value=value,
                partition=partition,
                timestamp_ms=ts,
                headers=list(headers),
            )
        except KafkaError as exc:
            raise BrokerError(
                f"producing to {topic}[{partition}] on {self._servers}: {exc}"
            ) from exc

    def _wait(self, futures: list[FutureRecordMetadata], where: str) -> list[Any]:
        try:
            self._producer.flush(timeout=_SEND_TIMEOUT_S)
            return [f.get(timeout=_SEND_TIMEOUT_S) for f in futures]
        except KafkaError as exc:
            raise BrokerError(f"sending to {where} on {self._servers} failed: {exc}") from exc

    def changelog(self, partition: int, start: int) -> Iterator[tuple[int, ChangelogRecord]]:
        """Every changelog record of a partition from offset `start` to the end."""
        tp = TopicPartition(self._changelog, partition)
        for record in self._read(tp, start):
            where = f"{self._changelog}[{partition}]@{record.offset}"
            yield record.offset, decode_changelog(record.value, where)

    def tail(self, partition: int) -> ChangelogTail:
        """Where a partition's changelog starts and ends, and the newest complete
        checkpoint its last record names (-1: none; the log is empty or has none)."""
        tp = TopicPartition(self._changelog, partition)
        first, end = self._extent(tp)
        if end <= first:
            return ChangelogTail(first, end, -1)
        last = next(self.changelog(partition, end - 1))[1]
        return ChangelogTail(first, end, base_of(last))

    def _extent(self, tp: TopicPartition) -> tuple[int, int]:
        """The oldest offset retention left and the high watermark, the latter from a
        fetch (`end_offsets` is wrong on some brokers for multi-record batches)."""
        reader = self._reader
        try:
            reader.assign([])
            reader.assign([tp])
            first = reader.beginning_offsets([tp])[tp]
            reader.seek(tp, first)
            deadline = time.monotonic() + _SEND_TIMEOUT_S
            while (end := reader.highwater(tp)) is None:
                reader.poll(timeout_ms=200, max_records=1)
                if time.monotonic() > deadline:
                    raise BrokerError(f"finding the end of {tp.topic}[{tp.partition}] timed out")
        except KafkaError as exc:
            raise BrokerError(f"finding the ends of {tp.topic}[{tp.partition}]: {exc}") from exc
        return first, end

    def landed(self, entry: Entry) -> set[int]:
        """Sequence numbers of `entry`'s outbox that are already in the output topics."""
        wanted = {o.seq for o in entry.outbox}
        src = str(entry.partition).encode()
        seen: set[int] = set()
        for tp in {self.output_partition(o.topic, entry.partition) for o in entry.outbox}:
            start = entry.progress.marks.get(f"{tp.topic}:{tp.partition}", 0)
            for record in self._read(tp, start):
                headers = dict(record.headers or ())
                if headers.get(SRC_HEADER) == src:
                    seq = int(headers.get(SEQ_HEADER, b"-1"))
                    if seq in wanted:
                        seen.add(seq)
        return seen

    def _read(self, tp: TopicPartition, start: int) -> Iterator[Any]:
        """Records of `tp` from `start` up to its high watermark at the time of reading."""
        reader = self._reader
        try:
            # A fresh assignment each time: no position, high watermark or fetch in
            # flight from an earlier read can leak into this one.
            reader.assign([])
            reader.assign([tp])
            reader.seek(tp, start)
            deadline = time.monotonic() + _SEND_TIMEOUT_S
            while True:
                records = reader.poll(timeout_ms=200, max_records=2_000).get(tp, [])
                if records:
                    deadline = time.monotonic() + _SEND_TIMEOUT_S
                yield from records
                end = reader.highwater(tp)
                if end is not None and reader.position(tp) >= end:
                    if start > end:
                        raise JoinStateError(
                            f"{tp.topic}[{tp.partition}] ends at offset {end} (position "
                            f"{reader.position(tp)}) but the local join state has read up to "
                            f"{start}: the topic was deleted or the cluster reset; delete the "
                            "joiner's --state-dir to start over from the topics"
                        )
                    return
                if time.monotonic() > deadline:
                    raise BrokerError(
                        f"reading {tp.topic}[{tp.partition}] from {self._servers} timed out"
                    )
        except KafkaError as exc:
            raise BrokerError(
                f"reading {tp.topic}[{tp.partition}] on {self._servers}: {exc}"
            ) from exc

    def close(self) -> None:
        self._reader.close()
        try:
            self._producer.close(timeout=10)
        except KafkaError as exc:
            log.warning("producer_close_failed error=%s", exc)
