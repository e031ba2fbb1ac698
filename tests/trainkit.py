"""Helpers of the trainer tests: labeled traffic with a learnable signal, produced as
single events and example batches; settings for a trainer; its store, read back."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from deploy.cli import build_parser
from deploy.commands import train
from deploy.settings.resolve import resolve
from deploy.settings.tables import Settings, TopicSettings
from model.trainer import TrainerConfig, row_layout
from model.zoo import ModelConfig
from store.errors import StoreSchemaError
from store.row_store import RowStore
from stream.events import LabeledEvent, encode_labeled, encode_labeled_batch
from stream.kafka.options import ClientOptions

T0 = 1_780_000_000_000
# Small enough for a CPU step in milliseconds; the paper's shape otherwise.
SMALL = ("--hidden-layers", "1", "--neurons", "16", "--k", "4", "--batch-size", "64")


def labeled_events(
    n: int, seed: int = 0, start: int = 0, flipped: bool = False
) -> list[LabeledEvent]:
    """Events whose click depends on (user, item) pairs: learnable, not trivial."""
    rng = random.Random(seed * 1_000_003 + start)
    events = []
    for i in range(start, start + n):
        user, item = rng.randrange(40), rng.randrange(25)
        p = 0.7 if (user + item) % 5 == 0 else 0.1
        label = int(rng.random() < p)
        if flipped:
            label = 1 - label
        features: dict[str, Any] = {"user": f"u{user}", "item": f"i{item}", "hour": i % 24}
        events.append(LabeledEvent(f"e{i}", T0 + i * 100, label, None, features))
    return events


class LabeledProducer:
    def __init__(self, options: ClientOptions, topic: str) -> None:
        self._topic = topic
        self._producer = KafkaProducer(**options.producer(acks="all"))

    def singles(self, events: list[LabeledEvent], partition: int) -> None:
        for e in events:
            self._producer.send(
                self._topic, value=encode_labeled(e), partition=partition, timestamp_ms=e.ts
            )

    def batches(self, events: list[LabeledEvent], partition: int, size: int) -> None:
        for at in range(0, len(events), size):
            chunk = events[at : at + size]
            value, headers = encode_labeled_batch(chunk)
            self._producer.send(
                self._topic,
                value=value,
                headers=headers,
                partition=partition,
                timestamp_ms=chunk[-1].ts,
            )

    def raw(self, value: bytes, partition: int, ts: int) -> None:
        self._producer.send(self._topic, value=value, partition=partition, timestamp_ms=ts)

    def flush(self) -> None:
        self._producer.flush()

    def close(self) -> None:
        self._producer.close()


def produce_batches(
    options: ClientOptions, topic: str, runs: list[list[LabeledEvent]], size: int
) -> None:
    """Each run of events as example batches of `size` to partition 0, in order, landed."""
    producer = LabeledProducer(options, topic)
    for run in runs:
        producer.batches(run, partition=0, size=size)
    producer.flush()
    producer.close()


def train_args(options: ClientOptions, labeled: str, dead_letter: str, store: Path) -> list[str]:
    """`fmstream train` flags of a small trainer on these topics."""
    return [
        "--bootstrap",
        options.bootstrap_servers,
        "--kafka-profile",
        "local",
        "--store-dir",
        str(store),
        "--device",
        "cpu",
        *SMALL,
        "--max-batch-wait-ms",
        "200",
        "--log-level",
        "WARNING",
        "--checkpoint-interval-s",
        "0.5",
        "--snapshot-dir",
        str(store.with_name(store.name + "-snapshots")),
    ]


def topic_env(topics: TopicSettings) -> dict[str, str]:
    """The environment naming every topic of `topics` (a private set on a shared broker)."""
    names = {f.name for f in dataclasses.fields(topics)} - {"partitions"}
    return {f"FMSTREAM_TOPICS_{n.upper()}": getattr(topics, n) for n in sorted(names)}


def settings_for(
    args: list[str], topics: TopicSettings, environ: Mapping[str, str] | None = None
) -> Settings:
    """`fmstream train`'s settings from flags and `environ` (besides the topics')."""
    parsed = build_parser().parse_args(["train", *args])
    return resolve(parsed, train.OPTIONS, {**topic_env(topics), **(environ or {})}, None)


def stored(store: Path, model: str = "deepfm") -> dict[str, Any]:
    """The store's checkpoint position, opened read-only (also beside a live trainer)."""
    args = [*SMALL]
    config = ModelConfig(name=model, k=int(args[args.index("--k") + 1]))
    width = row_layout(config, TrainerConfig()).width
    if not (store / model).exists():
        return {}  # killed before it opened its store
    try:
        rows = RowStore(store / model, width, read_only=True)
    except StoreSchemaError:
        # Caught between RocksDB creating the directory and the trainer writing its metadata.
        return {}
    try:
        return rows.position() or {}
    finally:
        rows.close()
