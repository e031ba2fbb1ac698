"""Writing records to Kafka with their event time as the record timestamp.

`KafkaRecordSink` sends a simulator's or a replay's records to their topics;
`TopicProducer` sends a daemon's side output (the trainer's dead letters and
snapshot announcements) to one topic, and `flush` makes them durable before the
caller moves past them. Both remember the first failed send and report it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from kafka import KafkaProducer
from kafka.errors import KafkaError

from stream.errors import BrokerError
from stream.kafka.options import ClientOptions

_FLUSH_TIMEOUT_S = 60.0


class OutgoingRecord(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def key(self) -> bytes: ...
    @property
    def value(self) -> bytes: ...
    @property
    def ts(self) -> int: ...


class _Sender:
    """One producer, its sends counted; the first failed send kept for `_raise`."""

    def __init__(self, options: ClientOptions, **config: Any) -> None:
        self._servers = options.bootstrap_servers
        self._failure: BaseException | None = None
        self.sent = 0
        try:
            self._producer = KafkaProducer(**options.producer(acks="all", **config))
        except KafkaError as exc:
            raise BrokerError(f"cannot connect a producer to {self._servers}: {exc}") from exc

    def _send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        timestamp: int,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        try:
            future = self._producer.send(
                topic, key=key, value=value, headers=headers, timestamp_ms=timestamp
            )
        except KafkaError as exc:
            raise BrokerError(f"producing to {topic} on {self._servers} failed: {exc}") from exc
        future.add_errback(self._remember)
        self.sent += 1

    def _remember(self, exc: BaseException) -> None:
        self._failure = self._failure or exc

    def _raise(self) -> None:
        raise BrokerError(
            f"a produce request to {self._servers} failed: {self._failure}"
        ) from self._failure


class KafkaRecordSink(_Sender):
    """Sends records keyed by impression id, so topics with equal partition counts
    stay co-partitioned; `topics` maps a record's logical topic to the real name."""

    def __init__(self, options: ClientOptions, topics: Mapping[str, str]) -> None:
        super().__init__(options, batch_size=256 * 1024)
        self._topics = dict(topics)

    def write(self, record: OutgoingRecord) -> None:
        if self._failure is not None:
            self._raise()
        self._send(self._topics[record.topic], record.key, record.value, record.ts)

    def close(self) -> None:
        try:
            self._producer.flush()
            self._producer.close()
        except KafkaError as exc:
            raise BrokerError(f"flushing the producer to {self._servers} failed: {exc}") from exc
        if self._failure is not None:
            self._raise()


class TopicProducer(_Sender):
    """Sends to one topic as records come; `flush` waits until every one has landed."""

    def __init__(self, options: ClientOptions, topic: str) -> None:
        super().__init__(options, max_request_size=32 * 1024 * 1024)
        self.topic = topic

    def send(
        self,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
        timestamp: int,
        key: bytes | None = None,
    ) -> None:
        self._send(self.topic, key, value, timestamp, headers)

    def flush(self) -> None:
        """Waits until every record sent has landed; a failed one is a BrokerError."""
        try:
            self._producer.flush(timeout=_FLUSH_TIMEOUT_S)
        except KafkaError as exc:
            raise BrokerError(f"flushing records to {self.topic}: {exc}") from exc
        if self._failure is not None:
            self._raise()

    def close(self) -> None:
        try:
            self._producer.close(timeout=10)
        except KafkaError as exc:
            raise BrokerError(f"closing the producer to {self._servers}: {exc}") from exc
