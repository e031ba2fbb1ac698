"""`fmstream replay` on logs that are broken, hostile or not what the flags say: one
line saying what is wrong, reports that always serialize, rows counted not fatal."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from deploy.batch.replay.run import BadRows, _joined
from stream.join.core import JoinConfig
from stream.join.ordered import OrderedJoin
from stream.logs.formats import CsvMapping, read_criteo, read_csv
from stream.logs.join_input import read_jsonl_dir
from stream.logs.log_rows import BadRow, LogRow
from stream.logs.order import sorted_by_time
from tests import hostile
from tests.clikit import Ran, run_fmstream

DATA = Path(__file__).resolve().parents[1] / "data"
QUICK = ["--models", "lr", "--store", "memory", "--log-level", "WARNING"]


def _run(*args: str, out: Path) -> Ran:
    return run_fmstream("replay", *args, "--out", str(out))


def _fails_in_one_line(result: Ran, words: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert words in result.stderr, result.stderr


def _hourly_csv(path: Path, rows: int, label: str = "y") -> list[str]:
    lines = [f"t,{label},user,city"]
    for i in range(rows):
        lines.append(f"{1_780_000_000 + i * 60},{int(i % 7 == 0)},u{i % 13},c{i % 3}")
    path.write_text("\n".join(lines) + "\n")
    return lines


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    ran = run_fmstream("simulate", "--out", str(out), "--days", "1", "--impressions-per-day", "600")
    assert ran.returncode == 0, ran.stderr
    return out


def test_a_rocksdb_store_dir_replay_writes_its_reports(tmp_path: Path) -> None:
    store = tmp_path / "rows"
    args = [str(DATA / "criteo_sample.txt"), "--periods", "2", "--models", "lr"]
    result = _run(*args, "--store", "rocksdb", "--store-dir", str(store), out=tmp_path / "r")
    assert result.returncode == 0, result.stderr
    doc = json.loads((tmp_path / "r" / "replay.json").read_text())
    assert doc["train"]["store_dir"] == str(store)
    assert [p["events"] for p in doc["periods"]] == [100, 100]


def test_a_cell_past_the_csv_limit_is_one_unreadable_row(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    lines = _hourly_csv(path, 300)
    lines[4] = f"{1_780_000_000},0,{'u' * 200_000},c1"
    path.write_text("\n".join(lines) + "\n")
    result = _run(str(path), "--label", "y", "--time", "t", "--period", "1h", *QUICK, out=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads((tmp_path / "replay.json").read_text())
    assert doc["bad_rows"]["count"] == 1
    assert doc["bad_rows"]["first"][0].startswith("line 5: unreadable: field larger")
    assert doc["events"] == 299


def test_a_directory_given_as_csv_is_refused(tmp_path: Path, simulated: Path) -> None:
    result = _run(str(simulated), "--format", "csv", "--label", "y", *QUICK, out=tmp_path)
    _fails_in_one_line(result, "is a directory, but --format csv reads one file")


def test_a_simulate_directory_without_clicks_is_refused(tmp_path: Path, simulated: Path) -> None:
    log = tmp_path / "log"
    log.mkdir()
    shutil.copy(simulated / "impressions.jsonl", log)
    _fails_in_one_line(_run(str(log), *QUICK, out=tmp_path / "r"), "has no clicks.jsonl")


def test_bad_click_lines_are_named_by_file_and_line(tmp_path: Path, simulated: Path) -> None:
    log = tmp_path / "log"
    shutil.copytree(simulated, log)
    clicks = (log / "clicks.jsonl").read_text().splitlines()
    clicks[2] = "{broken"
    (log / "clicks.jsonl").write_text("\n".join(clicks) + "\n")
    result = _run(str(log), *QUICK, out=tmp_path / "r")
    assert result.returncode == 0, result.stderr
    doc = json.loads((tmp_path / "r" / "replay.json").read_text())
    assert any(f.startswith("clicks.jsonl line 3: invalid_json") for f in doc["bad_rows"]["first"])


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00\xff\xfe" * 3000, b"t,y,a\n" + b"never,1,x\n" * 50],
    ids=["empty", "binary", "no-time"],
)
def test_a_log_with_nothing_readable_fails(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(content)
    args = ["--label", "y", "--time", "t", "--period", "1h", *QUICK]
    result = _run(str(path), *args, out=tmp_path / "r")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "nothing readable" in result.stderr or "columns" in result.stderr


def test_a_criteo_file_of_the_wrong_shape_fails(tmp_path: Path) -> None:
    path = tmp_path / "criteo.txt"
    path.write_text("\n".join("\t".join(["1"] * 200) for _ in range(30)) + "\n")
    result = _run(str(path), "--format", "criteo", "--periods", "2", *QUICK, out=tmp_path / "r")
    _fails_in_one_line(result, "nothing readable in the log: 30 of 30 records unreadable")


def test_too_many_unreadable_rows_stop_the_replay(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    lines = _hourly_csv(path, 3_000)
    for i in range(1, len(lines), 10):
        lines[i] = f"{1_780_000_000},perhaps,u1,c1"  # 10% with a label that is not 0/1
    path.write_text("\n".join(lines) + "\n")
    args = ["--label", "y", "--time", "t", "--period", "1h", *QUICK]
    result = _run(str(path), *args, out=tmp_path / "r")
    _fails_in_one_line(result, "more than --max-bad-share 0.01")
    assert _run(str(path), *args, "--max-bad-share", "0.2", out=tmp_path / "r").returncode == 0


def _hostile_lines(tmp_path: Path, name: str, header: bytes = b"") -> Path:
    path = tmp_path / name
    path.write_bytes(header + b"\n".join(hostile.lines(4, 1_500)) + b"\n")
    return path


def test_hostile_lines_become_records_or_unreadable_rows(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.mkdir()
    _hostile_lines(log, "impressions.jsonl")
    _hostile_lines(log, "clicks.jsonl")
    items = list(read_jsonl_dir(log))
    assert len(items) == 3_000  # one per line, nothing dropped
    bad = BadRows(max_share=1.0)
    events = list(_joined(iter(items), OrderedJoin(JoinConfig()), bad))
    assert bad.count + len(events) > 0 and bad.count > 1_000
    csv_rows: list[Any] = list(
        read_csv(_hostile_lines(tmp_path, "h.csv", b"t,y,a\n"), CsvMapping(label="y", time="t"))
    )
    criteo_rows: list[Any] = list(read_criteo(_hostile_lines(tmp_path, "h.criteo")))
    for rows in (csv_rows, criteo_rows):
        assert rows and all(isinstance(r, LogRow | BadRow) for r in rows)


def test_an_unsorted_log_is_refused_or_sorted(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    header, *rows = _hourly_csv(path, 2_000)
    random.Random(3).shuffle(rows)
    path.write_text("\n".join([header, *rows]) + "\n")
    args = [str(path), "--label", "y", "--time", "t", "--period", "6h", *QUICK]
    refused = _run(*args, out=tmp_path / "r")
    _fails_in_one_line(refused, "the log is not in time order: ")
    assert "timed rows come after a later one" in refused.stderr
    assert "replay with --sort" in refused.stderr
    result = _run(*args, "--sort", out=tmp_path / "r")
    assert result.returncode == 0, result.stderr
    doc = json.loads((tmp_path / "r" / "replay.json").read_text())
    assert doc["events"] == 2_000 and doc["events_after_their_period"] == 0
    assert doc["join"]["orphan_clicks"] == 0 and doc["join"]["late_clicks"] == 0
    assert doc["join"]["labels_positive"] == sum(1 for i in range(2_000) if i % 7 == 0)
    assert "joined: 2000 labels (286 clicked), late clicks 0, orphan clicks 0" in result.stdout
    assert "warning" not in result.stdout
    assert "joined: 2000 labels" in (tmp_path / "r" / "replay.md").read_text()


def test_the_external_sort_merges_spilled_chunks_in_time_order(tmp_path: Path) -> None:
    rng = random.Random(8)
    rows: list[LogRow | BadRow] = [
        LogRow(i, i % 2, rng.randrange(1_000), {"f": f"v{i}"}) for i in range(1_000)
    ]
    rows.insert(500, BadRow(9_999, "unreadable"))
    out = list(sorted_by_time(rows, chunk_rows=64, tmp_dir=tmp_path))
    assert out[0] == BadRow(9_999, "unreadable")
    good = [r for r in out if isinstance(r, LogRow)]
    assert sorted(good, key=lambda r: (r.ts, r.line)) == good
    assert sorted(r.line for r in good) == list(range(1_000))
    assert list(tmp_path.iterdir()) == []  # the spilled chunks are gone


def test_a_one_hour_avazu_log_is_cut_by_row_order(tmp_path: Path) -> None:
    args = [str(DATA / "avazu_sample.txt"), *QUICK]
    single = _run(*args, out=tmp_path / "one")
    assert single.returncode == 0, single.stderr
    assert "use a shorter --period, or --periods N" in single.stdout
    assert "No artists" not in single.stderr
    cut = _run(*args, "--periods", "5", out=tmp_path / "five")
    assert cut.returncode == 0, cut.stderr
    doc = json.loads((tmp_path / "five" / "replay.json").read_text())
    assert [p["events"] for p in doc["periods"]] == [20] * 5
    assert [p["start"] for p in doc["periods"]][:2] == ["rows 0-19", "rows 20-39"]
    assert "period 1 (rows 20-39): holdout" in cut.stdout
    assert "2026-01-01" not in cut.stdout


def test_periods_of_a_simulated_directory_are_equal_spans_of_time(
    tmp_path: Path, simulated: Path
) -> None:
    result = _run(str(simulated), "--periods", "3", *QUICK, out=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads((tmp_path / "replay.json").read_text())
    assert len(doc["periods"]) == 3 and doc["periods"][0]["start"].endswith("UTC")


def test_the_schema_is_shown_and_an_id_column_is_warned_about(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    lines = ["t,y,row,city"]
    for i in range(600):
        lines.append(f"{1_780_000_000 + i * 60},{int(i % 7 == 0)},{i},c{i % 3}")
    path.write_text("\n".join(lines) + "\n")
    result = _run(str(path), "--label", "y", "--time", "t", "--period", "3h", *QUICK, out=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "schema (first 600 events): field kind distinct-values" in result.stdout
    assert re.search(r"city +categorical +3", result.stdout)
    assert re.search(r"row +categorical +600", result.stdout)
    assert "warning: field 'row' has 600 distinct values in 600 events" in result.stdout
    doc = json.loads((tmp_path / "replay.json").read_text())
    assert {f["field"]: f["distinct"] for f in doc["schema"]["fields"]} == {"city": 3, "row": 600}
    assert "| row | categorical | 600 |" in (tmp_path / "replay.md").read_text()


def test_a_replay_that_fails_late_keeps_the_periods_it_finished(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    lines = _hourly_csv(path, 3_000)
    lines[2_001:] = [f"{1_780_000_000 + 2_000 * 60},maybe,u1,c1"] * 1_000  # the tail is bad
    path.write_text("\n".join(lines) + "\n")
    args = ["--label", "y", "--time", "t", "--period", "6h", *QUICK]
    result = _run(str(path), *args, out=tmp_path / "r")
    _fails_in_one_line(result, "more than --max-bad-share")
    assert "period 1 (" in result.stdout  # the tables came as the periods completed
    doc = json.loads((tmp_path / "r" / "replay.json").read_text())
    assert len(doc["periods"]) >= 4
    assert all("holdout" in p["models"]["LR"] for p in doc["periods"][1:])
