"""Reading the `labeled` topic as its one owner: every partition assigned (no group),
from positions the reader's user keeps, with the lag behind each high watermark."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from stream.errors import BrokerError
from stream.kafka.options import ClientOptions


@dataclass(frozen=True, slots=True)
class LabeledRecord:
    partition: int
    offset: int
    timestamp: int
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


class LabeledReader:
    def __init__(self, options: ClientOptions, topic: str, max_poll_records: int = 500) -> None:
        self.topic = topic
        self._servers = options.bootstrap_servers
        try:
            self._consumer = KafkaConsumer(
                **options.consumer(
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    max_poll_records=max_poll_records,
                    # An example batch is one record of up to 16 MB.
                    max_partition_fetch_bytes=32 * 1024 * 1024,
                    fetch_max_bytes=64 * 1024 * 1024,
                )
            )
            partitions = self._consumer.partitions_for_topic(topic)
        except KafkaError as exc:
            raise BrokerError(f"cannot read {topic} from {self._servers}: {exc}") from exc
        if not partitions:
            self._consumer.close()
            raise BrokerError(
                f"the topic {topic} does not exist on {self._servers}: start the joiner "
                "(it creates it) or create it"
            )
        self.partitions = tuple(sorted(partitions))
        self._tps = {p: TopicPartition(topic, p) for p in self.partitions}
        self._consumer.assign(list(self._tps.values()))

    def seek(self, next_offsets: Mapping[int, int]) -> None:
        """Starts each partition at its offset; one not named, at its beginning."""
        for p, tp in self._tps.items():
            if p in next_offsets:
                self._consumer.seek(tp, next_offsets[p])
            else:
                self._consumer.seek_to_beginning(tp)

    def seek_to_end(self) -> None:
        """Starts every partition after its last record: only what comes next is read."""
        self._consumer.seek_to_end(*self._tps.values())

    def poll(self, timeout_ms: int) -> list[LabeledRecord]:
        """The next records of every partition (each partition's in offset order)."""
        try:
            polled = self._consumer.poll(timeout_ms=timeout_ms)
        except KafkaError as exc:
            raise BrokerError(f"reading {self.topic} from {self._servers}: {exc}") from exc
        return [
            LabeledRecord(tp.partition, r.offset, r.timestamp, r.value, tuple(r.headers or ()))
            for tp, records in polled.items()
            for r in records
        ]

    def lag(self) -> dict[int, int]:
        """Records between each partition's position and its high watermark (known ones)."""
        out = {}
        for p, tp in self._tps.items():
            end = self._consumer.highwater(tp)
            if end is not None:
                out[p] = max(0, end - self._consumer.position(tp))
        return out

    def reachable(self) -> bool:
        """Whether the broker answers a metadata request now (blocks up to the request
        timeout when it does not; the consumer reconnects by itself meanwhile)."""
        try:
            self._consumer.topics()
        except KafkaError:
            return False
        return True

    def close(self) -> None:
        self._consumer.close()
