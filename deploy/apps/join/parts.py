"""What a join daemon is built from: the inputs' consumer, the changelog and
output I/O, and the local state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.structs import OffsetAndMetadata

from deploy.apps.join.recovery import JoinOutputs
from stream.join.state import JoinState


class InputConsumer(Protocol):
    """The inputs' consumer (a `KafkaConsumer`), subscribed by the daemon."""

    def subscribe(self, topics: list[str], listener: ConsumerRebalanceListener) -> None: ...
    def poll(self, timeout_ms: int) -> Mapping[TopicPartition, list[Any]]: ...
    def highwater(self, tp: TopicPartition) -> int | None: ...
    def position(self, tp: TopicPartition, timeout_ms: int | None = None) -> int | None: ...
    def assignment(self) -> set[TopicPartition]: ...
    def pause(self, *partitions: TopicPartition) -> None: ...
    def resume(self, *partitions: TopicPartition) -> None: ...
    def seek(self, partition: TopicPartition, offset: int) -> None: ...
    def seek_to_beginning(self, *partitions: TopicPartition) -> None: ...
    def commit_async(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> Any: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class JoinParts:
    """What a daemon is built from (`deploy.apps.join.clients.open_parts` opens them
    from configuration); the daemon closes them when it stops."""

    consumer: InputConsumer
    io: JoinOutputs
    state: JoinState
