from __future__ import annotations

from pathlib import Path

import orjson

from stream.logs.formats import AVAZU, CRITEO_COLUMNS, CsvMapping, read_criteo, read_csv
from stream.logs.join_input import LogRecord, read_jsonl_dir, rows_to_records
from stream.logs.log_rows import BadRow, LogRow

DATA = Path(__file__).resolve().parents[1] / "data"  # copies of ../shared/data


def _good(rows: list[LogRow | BadRow]) -> list[LogRow]:
    assert not [r for r in rows if isinstance(r, BadRow)]
    return [r for r in rows if isinstance(r, LogRow)]


def test_criteo_sample_with_header_and_the_same_rows_tab_separated(tmp_path: Path) -> None:
    csv_rows = _good(list(read_criteo(DATA / "criteo_sample.txt")))
    assert len(csv_rows) == 200
    first = csv_rows[0]
    assert first.label == 0 and first.ts is None and first.line == 2
    assert first.features["I2"] == 3.0 and "I1" not in first.features  # empty = missing
    assert first.features["C1"] == "05db9164" and "C19" not in first.features
    lines = (DATA / "criteo_sample.txt").read_text().splitlines()[1:]
    tsv = tmp_path / "day_0"
    tsv.write_text("\n".join(line.replace(",", "\t") for line in lines) + "\n")
    tsv_rows = _good(list(read_criteo(tsv)))
    assert [(r.label, r.features) for r in tsv_rows] == [(r.label, r.features) for r in csv_rows]
    assert tsv_rows[0].line == 1


def test_unreadable_criteo_rows_are_reported_with_their_line(tmp_path: Path) -> None:
    good = "\t".join(["1", *["5"] * 13, *["ab"] * 26])
    path = tmp_path / "c.tsv"
    path.write_text(f"{good}\nnot a row\n{good.replace('1', '7', 1)}\n{good}\n")
    rows = list(read_criteo(path))
    assert [type(r).__name__ for r in rows] == ["LogRow", "BadRow", "BadRow", "LogRow"]
    assert isinstance(rows[1], BadRow) and rows[1].line == 2 and "1 columns" in rows[1].reason
    assert isinstance(rows[2], BadRow) and "label '7'" in rows[2].reason
    assert len(CRITEO_COLUMNS) == 40


def test_avazu_sample_reads_label_hour_and_categorical_fields() -> None:
    rows = _good(list(read_csv(DATA / "avazu_sample.txt", AVAZU)))
    assert len(rows) == 100
    assert rows[0].ts == 1_413_849_600_000  # 2014-10-21 00:00 UTC
    assert "id" not in rows[0].features and "click" not in rows[0].features
    assert rows[0].features["site_id"] == "1fbe01fe" and rows[0].features["C1"] == "1005"
    assert sum(r.label for r in rows) > 0


def test_any_csv_through_a_column_mapping(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(
        "when;clicked;user;price;tags\n"
        "2026-03-01 10:00;1;u1;2.5;a|b\n"
        "2026-03-01 10:05;0;u2;;c\n"
        "yesterday;0;u3;1;d\n"
    )
    mapping = CsvMapping(
        label="clicked",
        time="when",
        time_format="%Y-%m-%d %H:%M",
        numeric=("price",),
        categorical=("user",),
        multi={"tags": "|"},
        delimiter=";",
    )
    rows = list(read_csv(path, mapping))
    assert rows[0] == LogRow(
        2, 1, 1_772_359_200_000, {"user": "u1", "price": 2.5, "tags": ["a", "b"]}
    )
    assert rows[1] == LogRow(3, 0, 1_772_359_500_000, {"user": "u2", "tags": ["c"]})
    assert isinstance(rows[2], BadRow) and rows[2].line == 4 and "yesterday" in rows[2].reason


def test_labeled_rows_become_impressions_and_delayed_clicks_in_time_order() -> None:
    rows = [LogRow(1, 1, None, {"f": "a"}), LogRow(2, 0, None, {"f": "b"}), LogRow(3, 1, None, {})]
    out = list(rows_to_records(rows, start_ms=0, step_ms=1_000, click_delay_ms=1_500))
    seen = [(r.topic, orjson.loads(r.value)["id"], r.ts) for r in out if isinstance(r, LogRecord)]
    assert seen == [
        ("impressions", "r1", 0),
        ("impressions", "r2", 1_000),
        ("clicks", "r1", 1_500),
        ("impressions", "r3", 2_000),
        ("clicks", "r3", 3_500),
    ]


def test_jsonl_directories_merge_both_topics_by_event_time(tmp_path: Path) -> None:
    (tmp_path / "impressions.jsonl").write_text(
        '{"id":"a","ts":10,"features":{}}\n{"id":"b","ts":30,"features":{}}\ngarbage\n'
    )
    (tmp_path / "clicks.jsonl").write_text('{"id":"a","ts":20}\n')
    out = list(read_jsonl_dir(tmp_path))
    assert [(r.topic, r.ts) for r in out if isinstance(r, LogRecord)] == [
        ("impressions", 10),
        ("clicks", 20),
        ("impressions", 30),
        ("impressions", 30),  # the garbage line keeps its place, for the joiner to reject
    ]
