"""A producer to one topic for a daemon that is not the joiner (the trainer's dead
letters and snapshot announcements): records go out as they come and `flush`
waits until every one has landed, so a caller can make them durable before it
moves past them."""

from __future__ import annotations

from kafka import KafkaProducer
from kafka.errors import KafkaError

from stream.errors import BrokerError
from stream.kafka.options import ClientOptions

_FLUSH_TIMEOUT_S = 60.0


class TopicProducer:
    def __init__(self, options: ClientOptions, topic: str) -> None:
        self.topic = topic
        self._servers = options.bootstrap_servers
        self._failure: BaseException | None = None
        self.sent = 0
        try:
            self._producer = KafkaProducer(
                **options.producer(acks="all", max_request_size=32 * 1024 * 1024)
            )
        except KafkaError as exc:
            raise BrokerError(f"cannot connect a producer to {self._servers}: {exc}") from exc

    def send(
        self,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
        timestamp: int,
        key: bytes | None = None,
    ) -> None:
        try:
            future = self._producer.send(
                self.topic, key=key, value=value, headers=headers, timestamp_ms=timestamp
            )
        except KafkaError as exc:
            raise BrokerError(f"producing to {self.topic} on {self._servers}: {exc}") from exc
        future.add_errback(self._remember)
        self.sent += 1

    def _remember(self, exc: BaseException) -> None:
        self._failure = self._failure or exc

    def flush(self) -> None:
        """Waits until every record sent has landed; a failed one is a BrokerError."""
        try:
            self._producer.flush(timeout=_FLUSH_TIMEOUT_S)
        except KafkaError as exc:
            raise BrokerError(f"flushing records to {self.topic}: {exc}") from exc
        if self._failure is not None:
            raise BrokerError(
                f"a record to {self.topic} on {self._servers} failed: {self._failure}"
            ) from self._failure

    def close(self) -> None:
        try:
            self._producer.close(timeout=10)
        except KafkaError as exc:
            raise BrokerError(f"closing the producer to {self._servers}: {exc}") from exc
