"""Opening a replay's input: its records in event-time order, its feature schema when the
format fixes one, and how event time maps to periods."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploy.batch.replay.protocol import Truth
from deploy.runtime.errors import ConfigError
from deploy.settings.tables import ReplaySettings
from model.features import FeatureSchema, FieldSpec, Kind
from stream.events import IMPRESSIONS
from stream.logs.formats import (
    AVAZU,
    CRITEO_CAT,
    CRITEO_INT,
    CsvMapping,
    csv_columns,
    read_criteo,
    read_csv,
)
from stream.logs.join_input import LogRecord, read_jsonl_dir, rows_to_records
from stream.logs.log_rows import BadRow, LogRow
from stream.logs.order import check_order, sorted_by_time
from stream.simulate.truth import read_truth

# The released Criteo columns: 13 counts, 26 hashed categoricals.
CRITEO_SCHEMA = FeatureSchema(
    tuple(FieldSpec(n, "continuous") for n in CRITEO_INT)
    + tuple(FieldSpec(n, "categorical") for n in CRITEO_CAT)
)
START_MS = 1_767_225_600_000  # 2026-01-01 UTC: the clock of logs that carry no time
ROW_STEP_MS = 1_000


class PeriodClock:
    """Period p covers [origin + p * length, origin + (p + 1) * length). Without a given
    origin it is the first event time seen, rounded down to a multiple of the length
    (UTC days for 1d)."""

    def __init__(self, length_ms: int, origin_ms: int | None = None) -> None:
        self._length = length_ms
        self._origin = origin_ms

    def period_of(self, ts: int) -> int:
        if self._origin is None:
            self._origin = ts // self._length * self._length
        return (ts - self._origin) // self._length

    def start_of(self, period: int) -> int:
        assert self._origin is not None
        return self._origin + period * self._length


@dataclass
class OpenedInput:
    records: Iterator[LogRecord | BadRow]
    schema: FeatureSchema | None
    clock: PeriodClock
    format: str
    truth: Truth | None  # each id's true click probability, where the log has it
    rows_per_period: int | None = None  # a log without time: periods are runs of rows


def detect_format(path: Path, requested: str) -> str:
    if requested != "auto":
        return requested
    if path.is_dir():
        return "jsonl"
    name = path.name.lower()
    for fmt in ("criteo", "avazu"):
        if fmt in name:
            return fmt
    return "csv"


def open_input(
    path: Path, cfg: ReplaySettings, seed: int, lateness_ms: int = 10_000
) -> OpenedInput:
    """`lateness_ms`: the join's allowed lateness, the disorder a timed log may have."""
    if not path.exists():
        raise ConfigError(f"the log {path} does not exist")
    fmt = detect_format(path, cfg.format)
    if fmt != "jsonl" and path.is_dir():
        raise ConfigError(
            f"{path} is a directory, but --format {fmt} reads one file (a `simulate --out` "
            "directory is --format jsonl)"
        )
    if fmt == "jsonl":
        if not path.is_dir():
            raise ConfigError(f"a jsonl replay reads a directory of `simulate --out`, not {path}")
        truth = cfg.truth or (path / "truth.csv" if (path / "truth.csv").exists() else None)
        records = _limit(read_jsonl_dir(path), cfg.max_rows)
        clock = _timed(cfg, lambda: _record_times(_limit(read_jsonl_dir(path), cfg.max_rows)))
        return OpenedInput(records, None, clock, fmt, _truth(truth))
    rows, schema, timed = _rows(path, fmt, cfg)
    if timed and cfg.periods:  # cut by row order: row order is then the time
        rows, timed = _without_time(rows), False
    rows = _sample(_limit(rows, cfg.max_rows), cfg.sample, seed)
    if timed:
        rows = sorted_by_time(rows) if cfg.sort else check_order(rows, lateness_ms)
    per_period = None
    if timed:
        clock = PeriodClock(cfg.period_ms())
    else:
        rows_in_file = _count_lines(path) - (0 if fmt == "criteo" and not _has_header(path) else 1)
        total = min(rows_in_file, cfg.max_rows) if cfg.max_rows else rows_in_file
        per_period = max(1, math.ceil(total / (cfg.periods or 1)))
        clock = PeriodClock(per_period * ROW_STEP_MS, START_MS)
    records = rows_to_records(rows, START_MS, ROW_STEP_MS, cfg.click_delay_ms)
    return OpenedInput(records, schema, clock, fmt, _truth(cfg.truth), per_period)


def _truth(path: Path | None) -> Truth | None:
    return None if path is None else truth_lookup(path)


def truth_lookup(path: Path) -> Truth:
    """Each id's true click probability from a simulator truth file (NaN: not in it)."""
    columns = read_truth(path)
    p_label = dict(zip(columns["id"].tolist(), columns["p_label"].tolist(), strict=True))
    return lambda ids: np.array([p_label.get(i, np.nan) for i in ids], dtype=np.float64)


def _timed(cfg: ReplaySettings, times: Callable[[], Iterator[int]]) -> PeriodClock:
    """`--period`, or with `--periods N` N equal spans of the directory's time (a first
    pass over the log finds where its time starts and ends)."""
    if not cfg.periods:
        return PeriodClock(cfg.period_ms())
    first = last = None
    for ts in times():
        first = ts if first is None else min(first, ts)
        last = ts if last is None else max(last, ts)
    if first is None or last is None:
        return PeriodClock(cfg.period_ms())  # nothing readable: the replay says so
    return PeriodClock(max(1, math.ceil((last - first + 1) / cfg.periods)), first)


def _record_times(items: Iterator[LogRecord | BadRow]) -> Iterator[int]:
    return (r.ts for r in items if isinstance(r, LogRecord) and r.topic == IMPRESSIONS)


def _without_time(rows: Iterator[LogRow | BadRow]) -> Iterator[LogRow | BadRow]:
    for row in rows:
        yield row if isinstance(row, BadRow) else LogRow(row.line, row.label, None, row.features)


def _rows(
    path: Path, fmt: str, cfg: ReplaySettings
) -> tuple[Iterator[LogRow | BadRow], FeatureSchema | None, bool]:
    if fmt == "criteo":
        return read_criteo(path), CRITEO_SCHEMA, False
    mapping = AVAZU if fmt == "avazu" else _mapping(cfg)
    fields = [FieldSpec(c, _KINDS[k]) for c, k in csv_columns(path, mapping).items()]
    schema = FeatureSchema(tuple(fields)) if fields else None
    return read_csv(path, mapping), schema, mapping.time is not None


# A CSV column's kind -> its field's kind: numbers are continuous features.
_KINDS: dict[str, Kind] = {"categorical": "categorical", "numeric": "continuous", "multi": "multi"}


def _mapping(cfg: ReplaySettings) -> CsvMapping:
    if not cfg.label:
        raise ConfigError("a CSV replay needs --label COLUMN (and optionally --time COLUMN)")
    return CsvMapping(
        label=cfg.label,
        time=cfg.time or None,
        time_format=cfg.time_format,
        categorical=tuple(filter(None, cfg.categorical.split(","))),
        numeric=tuple(filter(None, cfg.numeric.split(","))),
        multi=cfg.multi_columns(),
        delimiter=cfg.delimiter,
    )


def _sample(
    rows: Iterable[LogRow | BadRow], fraction: float, seed: int
) -> Iterator[LogRow | BadRow]:
    rng = random.Random(seed)
    for row in rows:
        if fraction >= 1.0 or rng.random() < fraction:
            yield row


def _limit(items: Iterator[Any], max_rows: int) -> Iterator[Any]:
    return itertools.islice(items, max_rows) if max_rows else items


def _has_header(path: Path) -> bool:
    with path.open("rb") as f:
        return f.readline().startswith(b"label")


def _count_lines(path: Path) -> int:
    count = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            count += chunk.count(b"\n")
    return count
