"""One replay: input -> ordered join -> period protocol -> report; and the grid of them."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry
from tqdm import tqdm

from deploy.batch.metrics import TrainingMetrics
from deploy.batch.replay import report
from deploy.batch.replay.census import FieldCensus
from deploy.batch.replay.freeze import Freezer
from deploy.batch.replay.inputs import OpenedInput, open_input
from deploy.batch.replay.protocol import PeriodReplay
from deploy.batch.replay.via_kafka import labeled_via_kafka
from deploy.runtime.errors import ConfigError, ReplayInputError
from deploy.settings.features import schema_toml
from deploy.settings.tables import Settings
from deploy.settings.train import TrainSettings
from deploy.wiring import admission_for, embedding_source, prepare_store
from model.features import FeatureSchema
from stream.errors import RecordError
from stream.events import LabeledEvent
from stream.join.ordered import OrderedJoin
from stream.logs.join_input import LogRecord
from stream.logs.log_rows import BadRow

log = logging.getLogger(__name__)
T = TypeVar("T")
SHOWN_BAD_ROWS = 5
# `--grid NAME=v1,v2` names -> [train] keys (section 3.3's hyper-parameters).
GRID_KEYS = {
    "dropout": "dropout_keep",
    "hidden": "neurons",
    "neurons": "neurons",
    "layers": "hidden_layers",
    "shape": "shape",
    "k": "k",
    "lr": "dense_lr",
    "batch": "batch_size",
}


class BadRows:
    """Unreadable rows, and the stop when too many are: past `max_share` of what was
    read (checked from CHECK_AFTER records on, and at the end), a replay's tables would
    describe some other log than the one given."""

    CHECK_AFTER = 1_000

    def __init__(self, max_share: float) -> None:
        self.count = 0
        self.read = 0
        self.first: list[str] = []
        self._max_share = max_share

    def add(self, row: BadRow) -> None:
        self.count += 1
        if len(self.first) < SHOWN_BAD_ROWS:
            self.first.append(f"{row.where}: {row.reason}")
        if self.read >= self.CHECK_AFTER:
            self.check()

    def check(self, events: int | None = None) -> None:
        if events == 0:
            raise ReplayInputError(
                f"nothing readable in the log: {self.count} of {self.read} records unreadable"
                + (f" (first: {'; '.join(self.first)})" if self.first else "")
            )
        if self.read and self.count / self.read > self._max_share:
            raise ReplayInputError(
                f"{self.count} of {self.read} records read so far are unreadable, more than "
                f"--max-bad-share {self._max_share:g} (first: {'; '.join(self.first)}); check "
                "--format and the column options, or raise --max-bad-share"
            )


def _counted(items: Iterator[T], bad: BadRows, progress: tqdm[Any] | None = None) -> Iterator[T]:
    for item in items:
        if progress is not None:
            progress.update()
        bad.read += 1
        yield item


def _joined(
    items: Iterator[LogRecord | BadRow], join: OrderedJoin, bad: BadRows
) -> Iterator[LabeledEvent]:
    """The in-process path: the joiner core, its output in impression-time order."""
    for item in items:
        if isinstance(item, BadRow):
            bad.add(item)
            continue
        try:
            yield from join.feed(item.topic, item.value)
        except RecordError as exc:
            bad.add(BadRow(item.line, f"{exc.reason}: {exc}", item.source))
    yield from join.finish()


def joined_log(
    path: Path, settings: Settings, seed: int
) -> tuple[OpenedInput, Iterator[LabeledEvent]]:
    """A log's labeled events as the replay makes them (the joiner core, impression-time
    order); a bad row fails it past `--max-bad-share`, as in a replay."""
    opened = open_input(path, settings.replay, seed, settings.join.allowed_lateness_ms)
    bad = BadRows(settings.replay.max_bad_share)

    def events() -> Iterator[LabeledEvent]:
        count = 0
        for event in _joined(_counted(opened.records, bad), OrderedJoin(settings.join), bad):
            count += 1
            yield event
        bad.check(count)

    return opened, events()


def replay(
    path: Path,
    settings: Settings,
    train: TrainSettings,
    out: Path,
    via_kafka: bool = False,
    reuse: str | None = None,
    show: Callable[[list[str]], None] | None = None,
) -> dict[str, Any]:
    """The log at `path` through the joiner and the trainers, period by period; `show`
    gets each period's holdout table as the period completes."""
    opened = open_input(path, settings.replay, train.seed, settings.join.allowed_lateness_ms)
    return run_replay(opened, str(path), settings, train, out, via_kafka, reuse, show)


def run_replay(
    opened: OpenedInput,
    name: str,
    settings: Settings,
    train: TrainSettings,
    out: Path,
    via_kafka: bool = False,
    reuse: str | None = None,
    show: Callable[[list[str]], None] | None = None,
    learn_before: int | None = None,
) -> dict[str, Any]:
    """An opened input through the replay protocol (`PeriodReplay`): reports in `out`
    (replay.json, .md, .png, metrics.prom), the report's data returned."""
    store_note = prepare_store(train, out / "store", reuse)
    if store_note:
        log.info("replay_store %s", store_note)
    shutil.rmtree(out / "snapshots", ignore_errors=True)
    # The in-process join's counters; the daemon's are its Prometheus metrics.
    join = None if via_kafka else OrderedJoin(settings.join)
    bad = BadRows(settings.replay.max_bad_share)
    census = FieldCensus()

    def meta() -> dict[str, Any]:
        return {
            **_meta(name, opened.format, train, via_kafka, bad, join),
            "rows_per_period": opened.rows_per_period,
            "schema": census.to_json(),
            "store_note": store_note,
        }

    finished: dict[int, dict[str, Any]] = {}

    def period_done() -> None:  # a late failure loses no finished period
        doc = report.build(protocol, meta(), finished)
        report.write_files(doc, out, with_plot=False)
        if show is not None:
            show(report.period_table(doc["periods"][-1]))

    protocol = _protocol(train, opened, out, period_done, learn_before)
    with tqdm(desc="replay", unit=" rec", disable=None, mininterval=2.0) as progress:
        records = _counted(opened.records, bad, progress)
        if join is None:
            events = labeled_via_kafka(records, settings, bad.add)
        else:
            events = _joined(records, join, bad)
        for event in events:
            census.add(event.features)
            protocol.add(event)
    protocol.finish()
    _write_schema(protocol.schema, train, out)
    bad.check(protocol.events)
    if bad.count:
        log.warning("replay_bad_rows count=%d first=%s", bad.count, "; ".join(bad.first))
    doc = report.build(protocol, meta())
    report.write_files(doc, out)
    metrics = TrainingMetrics(CollectorRegistry())
    metrics.record(protocol.tracks)
    metrics.write(out / "metrics.prom")
    return doc


def _write_schema(schema: FeatureSchema | None, train: TrainSettings, out: Path) -> None:
    """The schema the models learned with, as a `[features]` table a trainer can
    declare (`OUT/features.toml`)."""
    if schema is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "features.toml").write_text(schema_toml(schema, train.field_thresholds()))


def _protocol(
    train: TrainSettings,
    opened: OpenedInput,
    out: Path,
    on_period: Callable[[], None],
    learn_before: int | None,
) -> PeriodReplay:
    return PeriodReplay(
        train.model_configs(),
        train.trainer_config(),
        train.batch_size,
        opened.clock.period_of,
        opened.clock.start_of,
        Freezer(out / "snapshots"),
        source_for=lambda model, layout: embedding_source(train, layout, model.name, out / "store"),
        filter_for=lambda fields: admission_for(train, fields),
        truth=opened.truth,
        schema=opened.schema,
        eviction=train.eviction(),
        on_period=on_period,
        learn_before=learn_before,
    )


def _meta(
    name: str,
    fmt: str,
    train: TrainSettings,
    via_kafka: bool,
    bad: BadRows,
    join: OrderedJoin | None,
) -> dict[str, Any]:
    return {
        "input": name,
        "format": fmt,
        "models": [m.paper_name for m in train.model_configs()],
        "store": train.store,
        "joined_via": "the join daemon through an embedded broker" if via_kafka else "joiner core",
        "train": dataclasses.asdict(train),
        "bad_rows": {"count": bad.count, "first": bad.first},
        "join": dataclasses.asdict(join.core.stats) if join is not None else None,
    }


def grid(train: TrainSettings, spec: list[str]) -> list[tuple[str, TrainSettings]]:
    """Every combination of `NAME=v1,v2` values, as labeled settings."""
    if not spec:
        return [("", train)]
    axes = []
    for item in spec:
        name, _, values = item.partition("=")
        key = GRID_KEYS.get(name.strip())
        if key is None or not values:
            raise ConfigError(
                f"--grid {item!r}: expected NAME=V1,V2 with NAME in {sorted(GRID_KEYS)}"
            )
        kind = type(getattr(train, key))
        try:
            axes.append([(key, kind(v)) for v in values.split(",")])
        except ValueError as exc:
            raise ConfigError(f"--grid {item!r}: {exc}") from exc
    out = []
    for combo in itertools.product(*axes):
        label = " ".join(f"{k}={v}" for k, v in combo)
        out.append((label, dataclasses.replace(train, **dict(combo))))
    return out
