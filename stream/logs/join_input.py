"""Logs as the joiner's input: impression and click records in event-time order.

A labeled row becomes an impression at its time and, when its label is 1, a
click `click_delay_ms` later, so a replay goes through the same join as live
traffic. The n-th row (counting unreadable ones) of a log without time gets
`start_ms + n * step_ms`: row order is time.
fmstream JSONL directories (`fmstream simulate --out`) already hold both topics;
their two files are merged by event time.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from stream.errors import StreamError
from stream.events import CLICKS, IMPRESSIONS, Click, Impression, encode_click, encode_impression
from stream.logs.log_rows import BadRow, LogRow


@dataclass(frozen=True, slots=True)
class LogRecord:
    topic: str
    key: bytes
    value: bytes
    ts: int
    line: int  # where it came from, for error reports
    source: str = ""  # the file, where a log has several


def rows_to_records(
    rows: Iterable[LogRow | BadRow], start_ms: int, step_ms: int, click_delay_ms: int
) -> Iterator[LogRecord | BadRow]:
    clicks: list[tuple[int, int, LogRecord]] = []
    for ordinal, row in enumerate(rows):
        if isinstance(row, BadRow):
            yield row
            continue
        ts = row.ts if row.ts is not None else start_ms + ordinal * step_ms
        while clicks and clicks[0][0] <= ts:
            yield heapq.heappop(clicks)[2]
        rid = f"r{row.line}"
        key = rid.encode()
        value = encode_impression(Impression(rid, ts, row.features))
        yield LogRecord(IMPRESSIONS, key, value, ts, row.line)
        if row.label:
            at = ts + click_delay_ms
            click = LogRecord(CLICKS, key, encode_click(Click(rid, at)), at, row.line)
            heapq.heappush(clicks, (at, row.line, click))
    while clicks:
        yield heapq.heappop(clicks)[2]


def read_jsonl_dir(directory: Path) -> Iterator[LogRecord | BadRow]:
    """impressions.jsonl and clicks.jsonl merged by event time; each record names its
    file and line there."""
    paths = [directory / f"{topic}.jsonl" for topic in (IMPRESSIONS, CLICKS)]
    for path in paths:
        if not path.is_file():
            raise StreamError(
                f"{directory} has no {path.name} (is it `simulate --out`?); without it "
                + ("there is nothing to replay" if path == paths[0] else "every label is 0")
            )
    streams = [_jsonl(paths[0], IMPRESSIONS), _jsonl(paths[1], CLICKS)]
    for _, _, item in heapq.merge(*streams, key=lambda t: (t[0], t[1])):
        yield item


def _jsonl(path: Path, topic: str) -> Iterator[tuple[int, int, LogRecord | BadRow]]:
    last_ts = 0
    try:
        with path.open("rb") as f:
            for line, raw in enumerate(f, start=1):
                value = raw.rstrip(b"\n")
                ts, key = _place(value, last_ts)
                last_ts = ts
                yield ts, line, LogRecord(topic, key, value, ts, line, path.name)
    except OSError as exc:
        raise StreamError(f"cannot read {path}: {exc}") from exc


def _place(value: bytes, last_ts: int) -> tuple[int, bytes]:
    """A line's event time and id, to merge it into place; a line without them keeps the
    place of the one before (the joiner's decoder then says exactly what is wrong)."""
    try:
        obj = orjson.loads(value)
        ts, rid = obj["ts"], obj["id"]
    except (orjson.JSONDecodeError, KeyError, TypeError, IndexError):
        return last_ts, b""
    if isinstance(ts, int) and not isinstance(ts, bool) and isinstance(rid, str):
        return ts, rid.encode()
    return last_ts, b""
