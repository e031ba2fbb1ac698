"""The join's Kafka I/O: changelog entries and outputs out, changelog and outputs
back in for recovery.

Outputs go to partition `p % partitions(topic)` of their topic, p being the
join task's partition, so with equal partition counts a labeled event lands on
the partition its impression came from.

Each claimed task partition writes through a transactional producer of its own,
`transactional.id` = `<prefix>-<partition>`: claiming a partition (the first
step of its recovery) bumps the id's epoch, so an earlier owner still writing
(an instance frozen past its session timeout, a zombie) has its next write
refused by the broker and learns it was fenced. Transactions serve only that:
a transaction spans several writes and is committed when the daemon says
(`commit`), and the join's readers see what landed whether committed or not
(read_uncommitted, as recovery reads it). A failed write closes the producer; the daemon's recovery
claims the partition again with a fresh one and sends only what did not land.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import InvalidProducerEpochError, KafkaError, ProducerFencedError
from kafka.producer.future import FutureRecordMetadata

from stream.errors import BrokerError, JoinStateError, PartitionFencedError
from stream.join.checkpoint import ChangelogRecord, ChangelogTail, base_of, decode_changelog
from stream.join.records import SEQ_HEADER, SRC_HEADER, Entry, OutRecord
from stream.kafka.options import ClientOptions

log = logging.getLogger(__name__)
_SEND_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class _Send:
    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    ts: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class _InFlight:
    producer: KafkaProducer
    futures: list[FutureRecordMetadata]


class PendingOutputs:
    """Outputs on their way: `wait` blocks until they landed and returns the new
    marks ("topic:partition" -> next offset) of each task partition whose outputs
    did (all of them, unless one was released meanwhile)."""

    def __init__(self, io: JoinIO, sent: dict[int, _InFlight]) -> None:
        self._io = io
        self._sent = sent

    def wait(self) -> dict[int, dict[str, int]]:
        marks: dict[int, dict[str, int]] = {}
        for p, metas in self._io.acknowledged(self._sent).items():
            marks[p] = {}
            for meta in metas:
                key = f"{meta.topic}:{meta.partition}"
                marks[p][key] = max(marks[p].get(key, 0), meta.offset + 1)
        return marks


class JoinIO:
    def __init__(
        self,
        options: ClientOptions,
        topics: Mapping[str, str],
        changelog: str,
        partitions: Mapping[str, int],
        transactional_prefix: str,
    ) -> None:
        """`topics` maps logical output names to topics; `partitions` counts every topic's
        partitions (outputs and the changelog)."""
        self._topics = dict(topics)
        self._changelog = changelog
        self._partitions = dict(partitions)
        self._servers = options.bootstrap_servers
        self._options = options
        self._prefix = transactional_prefix
        self._producers: dict[int, KafkaProducer] = {}
        self._open: set[int] = set()  # partitions whose producer is in a transaction
        try:
            # Recovery reads to the end: a fetch there should not wait for more data.
            self._reader = KafkaConsumer(
                **options.consumer(enable_auto_commit=False, fetch_max_wait_ms=20)
            )
        except KafkaError as exc:
            raise BrokerError(f"cannot connect the joiner to {self._servers}: {exc}") from exc

    def output_partition(self, topic: str, task_partition: int) -> TopicPartition:
        name = self._topics[topic]
        return TopicPartition(name, task_partition % self._partitions[name])

    def claim(self, partition: int) -> None:
        """Makes this the only writer of a task partition: its writes go through a
        fresh producer whose transactional id fences every earlier one (an open
        transaction of this instance's own is aborted with it: what of it landed
        still counts)."""
        self.release(partition, commit=False)
        txn_id = f"{self._prefix}-{partition}"
        try:
            producer = KafkaProducer(
                **self._options.producer(
                    acks="all",
                    transactional_id=txn_id,
                    # Every write is flushed at once: lingering would only hold the
                    # other partitions' records back while one is flushed.
                    linger_ms=0,
                    batch_size=512 * 1024,
                    max_request_size=16 * 1024 * 1024,
                )
            )
        except KafkaError as exc:
            raise BrokerError(f"cannot connect the joiner to {self._servers}: {exc}") from exc
        try:
            producer.init_transactions()
        except KafkaError as exc:
            producer.close(timeout=1)
            raise BrokerError(
                f"claiming transactional id {txn_id} on {self._servers}: {exc}"
            ) from exc
        self._producers[partition] = producer

    def release(self, partition: int, commit: bool = True) -> None:
        """Closes the partition's producer (a revoke, a failed write), first committing
        its transaction unless `commit` is false (the producer has failed)."""
        producer = self._producers.pop(partition, None)
        if producer is None:
            return
        try:
            if commit and partition in self._open:
                producer.commit_transaction()
        except KafkaError as exc:
            log.warning("transaction_commit_failed partition=%d error=%s", partition, exc)
        finally:
            self._open.discard(partition)
        try:
            producer.close(timeout=1)
        except KafkaError as exc:
            log.warning("producer_close_failed partition=%d error=%s", partition, exc)

    def commit(self) -> None:
        """Commits every open transaction (the records in them had already landed)."""
        for p in sorted(self._open):
            with self._failures(p, "committing"):
                self._producers[p].commit_transaction()
            self._open.discard(p)

    def write_entries(self, entries: list[Entry]) -> list[int]:
        """Sends each entry to its partition of the changelog and waits; their offsets."""
        sends = {
            e.partition: [_Send(self._changelog, e.partition, None, e.encode())] for e in entries
        }
        offsets = self._write(sends)
        return [offsets[e.partition][0].offset for e in entries]

    def append(self, partition: int, values: list[bytes]) -> list[int]:
        """Sends encoded records (checkpoint chunks, a mark) to a partition of the
        changelog, in order, and waits; their offsets."""
        sends = [_Send(self._changelog, partition, None, v) for v in values]
        return [m.offset for m in self._write({partition: sends})[partition]]

    def write_outputs(self, outboxes: Mapping[int, list[OutRecord]]) -> dict[int, dict[str, int]]:
        """Sends task partitions' outputs, all at once, and waits; each partition's new
        marks ("topic:partition" -> next offset)."""
        return self.send_outputs(outboxes).wait()

    def send_outputs(self, outboxes: Mapping[int, list[OutRecord]]) -> PendingOutputs:
        """Sends task partitions' outputs without waiting for them to land."""
        sends: dict[int, list[_Send]] = {}
        for p, outs in outboxes.items():
            sends[p] = []
            for o in outs:
                tp = self.output_partition(o.topic, p)
                sends[p].append(_Send(tp.topic, tp.partition, o.key, o.value, o.ts, o.headers))
        return PendingOutputs(self, self._send_all(sends))

    def _write(self, sends: dict[int, list[_Send]]) -> dict[int, list[Any]]:
        """Each task partition's records through its producer, in its open
        transaction, sent and acknowledged; their metadata. Raises
        `PartitionFencedError` for a partition another instance has claimed since."""
        return self.acknowledged(self._send_all(sends))

    def _send_all(self, sends: dict[int, list[_Send]]) -> dict[int, _InFlight]:
        sent = {}
        for p, records in sends.items():
            producer = self._owned(p)
            with self._failures(p, "producing to"):
                if records and p not in self._open:
                    producer.begin_transaction()
                    self._open.add(p)
                sent[p] = _InFlight(producer, [self._send(producer, r) for r in records])
        return sent

    def acknowledged(self, sent: Mapping[int, _InFlight]) -> dict[int, list[Any]]:
        """The metadata of records sent, once acknowledged; a partition whose producer
        has been closed since (released, claimed afresh) is left out: whether its
        records landed is for its next recovery to find out."""
        done = {}
        for p, flight in sent.items():
            producer = self._producers.get(p)
            if producer is None or producer is not flight.producer:
                continue
            with self._failures(p, "sending to"):
                if flight.futures:
                    producer.flush(timeout=_SEND_TIMEOUT_S)
                done[p] = [f.get(timeout=_SEND_TIMEOUT_S) for f in flight.futures]
        return done

    def _owned(self, partition: int) -> KafkaProducer:
        producer = self._producers.get(partition)
        if producer is None:
            raise BrokerError(f"partition {partition} is not claimed by this instance")
        return producer

    @contextmanager
    def _failures(self, partition: int, doing: str) -> Iterator[None]:
        try:
            yield
        except (ProducerFencedError, InvalidProducerEpochError) as exc:
            self.release(partition, commit=False)
            raise PartitionFencedError(
                partition,
                f"task partition {partition} was claimed by another joiner instance ({exc}); "
                "this one stops writing it",
            ) from exc
        except KafkaError as exc:
            self.release(partition, commit=False)
            raise BrokerError(
                f"{doing} the outputs of task partition {partition} on {self._servers}: {exc}"
            ) from exc

    def _send(self, producer: KafkaProducer, r: _Send) -> FutureRecordMetadata:
        return producer.send(
            r.topic,
            key=r.key,
            value=r.value,
            partition=r.partition,
            timestamp_ms=r.ts,
            headers=list(r.headers),
        )

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
        # The log may end in transaction markers, which take offsets but hold no
        # record: look back from the end until a record turns up.
        back = 4
        while end > first:
            start = max(first, end - back)
            tail = deque(self._read(tp, start), maxlen=1)  # only the last is decoded
            if tail:
                raw = tail[0]
                where = f"{self._changelog}[{partition}]@{raw.offset}"
                return ChangelogTail(first, end, base_of(decode_changelog(raw.value, where)))
            if start == first:
                break
            back *= 4
        return ChangelogTail(first, end, -1)

    def _extent(self, tp: TopicPartition) -> tuple[int, int]:
        """The oldest offset retention left and the high watermark, the latter from a
        fetch (`end_offsets` is wrong on some brokers for multi-record batches)."""
        reader = self._reader
        try:
            first = reader.beginning_offsets([tp])[tp]
            self._assign(tp, first)
            deadline = time.monotonic() + _SEND_TIMEOUT_S
            while (end := reader.highwater(tp)) is None:
                reader.poll(timeout_ms=20, max_records=1)
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
            self._assign(tp, start)
            deadline = time.monotonic() + _SEND_TIMEOUT_S
            while True:
                records = reader.poll(timeout_ms=20, max_records=2_000).get(tp, [])
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

    def _assign(self, tp: TopicPartition, start: int) -> None:
        """The reader on `tp` alone at `start`, assigned afresh: no position, high
        watermark or fetch in flight from an earlier read can leak into this one."""
        self._reader.assign([])
        self._reader.assign([tp])
        self._reader.seek(tp, start)

    def close(self) -> None:
        self._reader.close()
        for partition in list(self._producers):
            self.release(partition)
