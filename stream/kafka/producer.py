"""Writing records to Kafka with their event time as the record timestamp."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from kafka import KafkaProducer
from kafka.errors import KafkaError

from stream.errors import BrokerError
from stream.kafka.options import ClientOptions


class OutgoingRecord(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def key(self) -> bytes: ...
    @property
    def value(self) -> bytes: ...
    @property
    def ts(self) -> int: ...


class KafkaRecordSink:
    """Sends records keyed by impression id, so topics with equal partition counts
    stay co-partitioned; `topics` maps a record's logical topic to the real name."""

    def __init__(self, options: ClientOptions, topics: Mapping[str, str]) -> None:
        self._topics = dict(topics)
        self._servers = options.bootstrap_servers
        self._failure: BaseException | None = None
        self.sent = 0
        try:
            self._producer = KafkaProducer(**options.producer(acks="all", batch_size=256 * 1024))
        except KafkaError as exc:
            raise BrokerError(f"cannot connect a producer to {self._servers}: {exc}") from exc

    def write(self, record: OutgoingRecord) -> None:
        if self._failure is not None:
            self._raise()
        topic = self._topics[record.topic]
        try:
            future = self._producer.send(
                topic, key=record.key, value=record.value, timestamp_ms=record.ts
            )
        except KafkaError as exc:
            raise BrokerError(f"producing to {topic} on {self._servers} failed: {exc}") from exc
        future.add_errback(self._remember)
        self.sent += 1

    def _remember(self, exc: BaseException) -> Any:
        self._failure = self._failure or exc

    def _raise(self) -> None:
        raise BrokerError(
            f"a produce request to {self._servers} failed: {self._failure}"
        ) from self._failure

    def close(self) -> None:
        try:
            self._producer.flush()
            self._producer.close()
        except KafkaError as exc:
            raise BrokerError(f"flushing the producer to {self._servers} failed: {exc}") from exc
        if self._failure is not None:
            self._raise()
