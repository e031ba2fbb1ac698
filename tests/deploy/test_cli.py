"""The `fmstream` console script as a user runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from deploy.cli import COMMANDS
from deploy.local.broker import free_port
from store.row_store import RowStore
from tests.clikit import run_fmstream

FMSTREAM = str(Path(sys.executable).parent / "fmstream")
TINY = [
    "--days",
    "2",
    "--impressions-per-day",
    "3000",
    "--users",
    "500",
    "--items",
    "100",
    "--advertisers",
    "20",
    "--new-items-per-day",
    "10",
]


def _run(
    *argv: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [FMSTREAM, *argv],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


def _ran(*argv: str) -> tuple[int, str, str]:
    ran = run_fmstream(*argv)
    return ran.returncode, ran.stdout, ran.stderr


def test_the_console_script_lists_every_subcommand() -> None:
    result = _run("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command.NAME in result.stdout


@pytest.mark.parametrize("name", [c.NAME for c in COMMANDS])
def test_every_subcommand_has_help_showing_env_variables(name: str) -> None:
    code, out, err = _ran(name, "--help")
    assert code == 0, err
    assert "FMSTREAM_LOGGING_LEVEL" in out
    assert "FMSTREAM_CONFIG" in out


def test_simulate_to_files_prints_bayes_table_and_writes_everything(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    result = _run("simulate", "--out", str(out), *TINY)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert "bayes_auc" in lines[0] and len(lines) == 3
    assert {p.name for p in out.iterdir()} == {
        "impressions.jsonl",
        "clicks.jsonl",
        "truth.csv",
        "simulation.json",
    }
    manifest = json.loads((out / "simulation.json").read_text())
    assert manifest["config"]["impressions_per_day"] == 3000
    assert [d["day"] for d in manifest["days"]] == [0, 1]
    auc = manifest["days"][0]["bayes"]["auc"]
    assert 0.6 < auc < 0.95
    assert f"{auc:.4f}" in lines[1]
    # One log line per event, on stderr, never mixed into the table.
    day_lines = [ln for ln in result.stderr.splitlines() if "day_simulated" in ln]
    assert (
        len(day_lines) == 2
        and " INFO deploy.apps.simulate.driver day_simulated day=0 " in day_lines[0]
    )


def test_demo_trains_and_reports_the_next_day_holdout(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = _run("demo", "--out", str(out), *TINY, "--models", "lr,deepfm", "--neurons", "32")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "next-day holdout: day 1 (3000 impressions" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line}
    assert {"Bayes-optimal", "DeepFM", "LR"} <= rows.keys()
    bayes_auc = float(rows["Bayes-optimal"][1])
    for model in ("DeepFM", "LR"):
        auc, calibration = float(rows[model][2]), float(rows[model][5])
        assert 0.5 < auc < bayes_auc
        # Learned in impression-time order, the snapshot is not dragged down by the
        # period's last, all-negative labels: its mean prediction stays near the truth.
        assert 0.7 < calibration < 1.4
    assert "joined: 6000 labels" in text
    assert {p.name for p in out.iterdir()} >= {"impressions.jsonl", "clicks.jsonl", "truth.csv"}


def test_demo_through_the_rocksdb_store_matches_the_in_memory_run(tmp_path: Path) -> None:
    args = [*TINY, "--models", "fm", "--log-level", "WARNING"]
    memory = _run("demo", "--out", str(tmp_path / "m"), *args)
    rocks = _run(
        "demo", "--out", str(tmp_path / "r"), *args, "--store", "rocksdb", "--cache-rows", "2000"
    )
    assert memory.returncode == 0 and rocks.returncode == 0, rocks.stderr

    def table(text: str) -> list[list[str]]:
        # Every metric column; the last one (training speed) naturally differs.
        return [ln.split()[:6] for ln in text.splitlines() if ln.startswith(("FM ", "Bayes"))]

    assert table(rocks.stdout) == table(memory.stdout)
    store = RowStore(tmp_path / "r" / "store" / "fm", 1 + 10 + 2 + 10)  # w, V | FTRL, Adagrad
    try:
        assert store.count() > 500  # users, ads, contexts of 2 tiny days
        position = store.position()
        assert position is not None and position["trained_events"] == 3000
    finally:
        store.close()


def test_demo_evicts_on_its_event_time_schedule_and_writes_metrics(tmp_path: Path) -> None:
    out = tmp_path / "r"
    args = ["--models", "fm", "--store", "rocksdb", "--store-max-rows", "300"]
    result = _run(
        "demo", "--out", str(out), *TINY, *args, "--evict-every-hours", "6", "--admit-after", "2"
    )
    assert result.returncode == 0, result.stderr
    match = re.search(
        r"store FM: (\d+) rows after eviction \((\d+) unseen past the TTL, (\d+) beyond",
        result.stdout,
    )
    assert match is not None, result.stdout
    remaining, expired, trimmed = map(int, match.groups())
    assert remaining == 300 and expired == 0 and trimmed > 0
    metrics = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families((out / "metrics.prom").read_text())
        for sample in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return metrics[(name, tuple(sorted({"model": "fm", **labels}.items())))]

    assert value("fmstream_store_rows_evicted_total", reason="max_rows") == trimmed
    assert value("fmstream_store_rows") == 300
    assert value("fmstream_admission_ids_total", decision="deferred") > 0
    assert value("fmstream_cache_lookups_total", result="miss") > 0
    assert value("fmstream_trained_events_total") == 3000


def test_demo_rejects_an_unknown_model() -> None:
    code, _, err = _ran("demo", "--models", "lr,xgboost")
    assert code == 2
    assert "train.models: unknown model 'xgboost'" in err


def test_log_level_from_the_environment_silences_info(tmp_path: Path) -> None:
    result = _run(
        "simulate", "--out", str(tmp_path), *TINY, env={"FMSTREAM_LOGGING_LEVEL": "WARNING"}
    )
    assert result.returncode == 0
    assert "day_simulated" not in result.stderr


def test_bad_flag_value_exits_2_naming_the_key() -> None:
    code, _, err = _ran("simulate", "--days", "-1")
    assert code == 2
    assert "simulate.days must be > 0" in err


def test_unwritable_output_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = _run("simulate", "--out", str(blocker / "sub"), *TINY)
    assert result.returncode == 1
    assert f"cannot create output directory {blocker / 'sub'}" in result.stderr


def test_simulate_to_an_absent_broker_fails_fast_with_the_address(tmp_path: Path) -> None:
    result = _run(
        "simulate",
        "--bootstrap",
        "127.0.0.1:1",
        "--kafka-profile",
        "local",
        *TINY,
        "--truth",
        str(tmp_path / "t.csv"),
        timeout=60,
    )
    assert result.returncode == 1
    assert "127.0.0.1:1" in result.stderr


@pytest.mark.parametrize("servers", ["notahost:abc", "host", ":9092", "a:1,b:99999", "x y:1"])
def test_a_bootstrap_that_is_not_host_port_is_a_configuration_error(servers: str) -> None:
    code, _, err = _ran("join", "--bootstrap", servers)
    assert code == 2
    assert "kafka.bootstrap_servers must be host:port" in err
    assert "Traceback" not in err


def test_join_with_no_broker_listening_says_so_in_one_line(tmp_path: Path) -> None:
    server = f"127.0.0.1:{free_port()}"
    argv = ["join", "--bootstrap", server, "--kafka-profile", "local"]
    result = _run(*argv, "--state-dir", str(tmp_path / "s"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"fmstream join: error: cannot reach the Kafka cluster at {server}: KafkaTimeoutError: "
        f"Unable to bootstrap from ['{server}']; check --bootstrap and that the brokers are up"
    ]
