"""Time order of a log's rows: a check that stops on disorder the join cannot absorb,
and an external sort that puts a log in order within bounded memory.

The join labels a click only if its impression is still waiting; a row logged
more than the allowed lateness before the newest one already read arrives after
its window may have closed, and the period it belongs to may be over. A log that
is not sorted by time is therefore refused (with how disordered it is) or sorted.
"""

from __future__ import annotations

import heapq
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import orjson

from stream.errors import StreamError
from stream.logs.log_rows import BadRow, LogRow

Row = LogRow | BadRow
SORT_CHUNK_ROWS = 200_000  # rows held in memory at once while sorting


class DisorderError(StreamError):
    """The log is not in time order beyond the join's allowed lateness."""


@dataclass
class Disorder:
    rows: int = 0
    behind: int = 0  # rows older than the newest row read by more than the lateness
    worst_ms: int = 0
    first_line: int | None = None


def check_order(rows: Iterable[Row], lateness_ms: int) -> Iterator[Row]:
    """The rows as they are, until one is older than the newest so far by more than
    `lateness_ms`; then the rest is read (to say how disordered the log is) and
    DisorderError raised. Rows without time pass unchecked."""
    newest: int | None = None
    seen = Disorder()
    iterator = iter(rows)
    for row in iterator:
        if isinstance(row, BadRow) or row.ts is None:
            yield row
            continue
        seen.rows += 1
        if newest is not None and newest - row.ts > lateness_ms:
            seen.first_line = row.line
            _measure(iterator, seen, newest, row.ts, lateness_ms)
            raise DisorderError(_describe(seen, lateness_ms))
        newest = row.ts if newest is None else max(newest, row.ts)
        yield row


def _measure(rest: Iterator[Row], seen: Disorder, newest: int, ts: int, lateness_ms: int) -> None:
    seen.behind, seen.worst_ms = 1, newest - ts
    for row in rest:
        if isinstance(row, BadRow) or row.ts is None:
            continue
        seen.rows += 1
        if newest - row.ts > lateness_ms:
            seen.behind += 1
            seen.worst_ms = max(seen.worst_ms, newest - row.ts)
        newest = max(newest, row.ts)


def _describe(seen: Disorder, lateness_ms: int) -> str:
    return (
        f"the log is not in time order: {seen.behind} of {seen.rows} timed rows come after "
        f"a later one (the first at line {seen.first_line}, the worst {seen.worst_ms / 1000:g} "
        f"s behind), beyond the join's allowed lateness of {lateness_ms / 1000:g} s; the "
        "labels and periods would be wrong: replay with --sort (an external sort on disk), "
        "or sort the file by its time column"
    )


def sorted_by_time(
    rows: Iterable[Row], chunk_rows: int = SORT_CHUNK_ROWS, tmp_dir: Path | None = None
) -> Iterator[Row]:
    """Rows by (time, line), unreadable ones first: chunks of `chunk_rows` are sorted in
    memory and spilled to temporary files, then merged."""
    with tempfile.TemporaryDirectory(prefix="fmstream-sort-", dir=tmp_dir) as tmp:
        chunks: list[Path] = []
        buffer: list[LogRow] = []
        for row in rows:
            if isinstance(row, BadRow):
                yield row
                continue
            buffer.append(row)
            if len(buffer) >= chunk_rows:
                chunks.append(_spill(buffer, Path(tmp) / f"{len(chunks)}.jsonl"))
                buffer = []
        buffer.sort(key=_order)
        if not chunks:
            yield from buffer
            return
        files = [path.open("rb") for path in chunks]
        try:
            yield from heapq.merge(*(_read(f) for f in files), iter(buffer), key=_order)
        finally:
            for f in files:
                f.close()


def _order(row: LogRow) -> tuple[int, int]:
    return (row.ts if row.ts is not None else 0, row.line)


def _spill(rows: list[LogRow], path: Path) -> Path:
    rows.sort(key=_order)
    with path.open("wb") as f:
        for r in rows:
            f.write(orjson.dumps([r.line, r.label, r.ts, r.features]) + b"\n")
    return path


def _read(f: IO[bytes]) -> Iterator[LogRow]:
    for raw in f:
        line, label, ts, features = orjson.loads(raw)
        yield LogRow(line, label, ts, features)
