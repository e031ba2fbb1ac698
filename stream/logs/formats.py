"""Readers of labeled logs, streaming line by line.

- Criteo: `label, I1..I13, C1..C26`, tab-separated without a header (the Kaggle
  release) or CSV with a header; empty cells are missing; integer columns are
  continuous, the rest categorical. No time: periods are cut by row order.
- Avazu: CSV with a header; `click` is the label, `hour` (YYMMDDHH, UTC) the time,
  `id` is dropped, every other column is categorical.
- Any CSV through a `CsvMapping`: which column is the label, which the time (a
  strftime format or a unit), which are categorical, numeric or multi-valued.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from stream.errors import StreamError
from stream.events import EARLIEST_TS, LATEST_TS, FeatureValue
from stream.logs.log_rows import BadRow, LogRow

CRITEO_INT = tuple(f"I{i}" for i in range(1, 14))
CRITEO_CAT = tuple(f"C{i}" for i in range(1, 27))
CRITEO_COLUMNS = ("label", *CRITEO_INT, *CRITEO_CAT)
Row = LogRow | BadRow


@dataclass(frozen=True)
class CsvMapping:
    label: str
    time: str | None = None
    # "s" or "ms" for epoch numbers, else a strftime format read as UTC.
    time_format: str = "s"
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    multi: Mapping[str, str] = field(default_factory=dict)  # column -> separator
    drop: tuple[str, ...] = ()
    delimiter: str = ","


AVAZU = CsvMapping(label="click", time="hour", time_format="%y%m%d%H", drop=("id",))


def _open(path: Path) -> io.TextIOWrapper:
    try:
        return path.open("r", encoding="utf-8", errors="replace", newline="")
    except OSError as exc:
        raise StreamError(f"cannot read the log {path}: {exc}") from exc


MAX_LINE_CHARS = 1 << 20  # longer lines are unreadable rows, never held whole in memory


def _cells(
    f: io.TextIOWrapper, delimiter: str, first_line: int
) -> Iterator[tuple[int, list[str] | BadRow]]:
    """(line, cells) of each CSV record, or a BadRow for one that cannot be read (a
    cell past the csv module's limit, a line over MAX_LINE_CHARS)."""
    long_lines: set[int] = set()
    reader = csv.reader(_bounded_lines(f, first_line, long_lines), delimiter=delimiter)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, BadRow(first_line - 1 + reader.line_num, f"unreadable: {exc}")
            continue
        line = first_line - 1 + reader.line_num
        if line in long_lines:
            yield line, BadRow(line, f"the line is longer than {MAX_LINE_CHARS} characters")
        elif cells:
            yield line, cells


def _bounded_lines(f: io.TextIOWrapper, first_line: int, long_lines: set[int]) -> Iterator[str]:
    line = first_line
    while text := f.readline(MAX_LINE_CHARS):
        if len(text) == MAX_LINE_CHARS and not text.endswith("\n"):
            while (rest := f.readline(MAX_LINE_CHARS)) and not rest.endswith("\n"):
                pass
            long_lines.add(line)
            text = "\n"
        yield text
        line += 1


def read_criteo(path: Path) -> Iterator[Row]:
    with _open(path) as f:
        first = f.readline(MAX_LINE_CHARS)
        has_header = first.startswith("label")
        delimiter = "," if has_header or "\t" not in first else "\t"
        if not has_header:
            f.seek(0)
        for line, cells in _cells(f, delimiter, 2 if has_header else 1):
            yield cells if isinstance(cells, BadRow) else _criteo_row(line, cells)


def _criteo_row(line: int, cells: list[str]) -> Row:
    if len(cells) != len(CRITEO_COLUMNS):
        return BadRow(line, f"{len(cells)} columns, a Criteo row has {len(CRITEO_COLUMNS)}")
    label = _label(cells[0])
    if label is None:
        return BadRow(line, f"label {_cut(cells[0])} is not 0 or 1")
    features: dict[str, FeatureValue] = {}
    for name, cell in zip(CRITEO_INT, cells[1:14], strict=True):
        if cell:
            value = _number(cell)
            if value is None:
                return BadRow(line, f"{name} = {_cut(cell)} is not a finite number")
            features[name] = value
    for name, cell in zip(CRITEO_CAT, cells[14:], strict=True):
        if cell:
            features[name] = cell
    return LogRow(line, label, None, features)


def read_csv(path: Path, mapping: CsvMapping) -> Iterator[Row]:
    with _open(path) as f:
        rows = _cells(f, mapping.delimiter, 1)
        header = _header(path, rows)
        if header is None:
            return
        columns = _check_columns(path, header, mapping)
        for line, cells in rows:
            if isinstance(cells, BadRow):
                yield cells
            else:
                yield _csv_row(line, cells, header, columns, mapping)


def csv_columns(path: Path, mapping: CsvMapping) -> dict[str, str]:
    """The feature columns of a CSV log and their kinds (categorical, numeric, multi),
    from its header: every column the mapping reads is a field, present in the rows
    or not. Empty for an empty file."""
    with _open(path) as f:
        header = _header(path, _cells(f, mapping.delimiter, 1))
    return {} if header is None else _check_columns(path, header, mapping)


def _header(path: Path, rows: Iterator[tuple[int, list[str] | BadRow]]) -> list[str] | None:
    first = next(rows, None)
    if first is None:
        return None
    if isinstance(first[1], BadRow):
        raise StreamError(f"{path}: the header line cannot be read ({first[1].reason})")
    return first[1]


def _check_columns(path: Path, header: list[str], mapping: CsvMapping) -> dict[str, str]:
    """Each feature column's kind; the label, time and named columns must exist."""
    named = [mapping.label, *mapping.categorical, *mapping.numeric, *mapping.multi]
    if mapping.time is not None:
        named.append(mapping.time)
    missing = [c for c in named if c not in header]
    if missing:
        raise StreamError(f"{path}: columns {missing} are not in the header {header}")
    taken = {mapping.label, mapping.time, *mapping.drop}
    explicit = bool(mapping.categorical or mapping.numeric or mapping.multi)
    kinds: dict[str, str] = {}
    for column in header:
        if column in taken:
            continue
        if column in mapping.multi:
            kinds[column] = "multi"
        elif column in mapping.numeric:
            kinds[column] = "numeric"
        elif column in mapping.categorical or not explicit:
            kinds[column] = "categorical"
    return kinds


def _csv_row(
    line: int, cells: list[str], header: list[str], kinds: dict[str, str], mapping: CsvMapping
) -> Row:
    if len(cells) != len(header):
        return BadRow(line, f"{len(cells)} columns, the header has {len(header)}")
    row = dict(zip(header, cells, strict=True))
    label = _label(row[mapping.label])
    if label is None:
        return BadRow(line, f"label {_cut(row[mapping.label])} is not 0 or 1")
    ts = None
    if mapping.time is not None:
        ts = _time(row[mapping.time], mapping.time_format)
        if ts is not None and not EARLIEST_TS <= ts < LATEST_TS:
            return BadRow(line, f"time {_cut(row[mapping.time])} is not between 2000 and 2100")
        if ts is None:
            return BadRow(
                line, f"time {_cut(row[mapping.time])} does not match {mapping.time_format!r}"
            )
    features: dict[str, FeatureValue] = {}
    for column, kind in kinds.items():
        cell = row[column]
        if not cell:
            continue
        if kind == "numeric":
            value = _number(cell)
            if value is None:
                return BadRow(line, f"{column} = {_cut(cell)} is not a finite number")
            features[column] = value
        elif kind == "multi":
            features[column] = [v for v in cell.split(mapping.multi[column]) if v]
        else:
            features[column] = cell
    return LogRow(line, label, ts, features)


def _number(cell: str) -> float | None:
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _cut(cell: str, limit: int = 60) -> str:
    return repr(cell) if len(cell) <= limit else repr(cell[:limit]) + f"... ({len(cell)} chars)"


def _label(cell: str) -> int | None:
    cell = cell.strip()
    if cell in ("0", "1"):
        return int(cell)
    try:
        value = float(cell)
    except ValueError:
        return None
    return int(value) if value in (0.0, 1.0) else None


def _time(cell: str, fmt: str) -> int | None:
    try:
        if fmt == "s":
            return int(float(cell) * 1000)
        if fmt == "ms":
            return int(float(cell))
        return int(datetime.strptime(cell, fmt).replace(tzinfo=UTC).timestamp() * 1000)
    except (ValueError, OverflowError, OSError):  # not a time, or none a datetime can hold
        return None
