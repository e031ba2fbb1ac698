"""The evaluator's next-day holdout equals the replay's on the same traffic: a
simulated log replayed offline, and the same labeled events, in the same order,
learned by a real `fmstream train` process from a real topic and judged by
`fmstream evaluate`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from deploy.apps.evaluate.outputs import date_of
from deploy.batch.replay.run import joined_log
from deploy.cli import build_parser
from deploy.commands import replay
from deploy.local.broker import EmbeddedBroker
from deploy.settings.resolve import resolve
from deploy.settings.tables import Settings, TopicSettings
from stream.events import DAY_MS
from tests.clikit import run_fmstream
from tests.servekit import FMSTREAM
from tests.trainkit import SMALL, LabeledProducer, topic_env

MODELS = "deepfm,lr"
PAPER = {"deepfm": "DeepFM", "lr": "LR"}


def _replay_settings() -> Settings:
    return resolve(build_parser().parse_args(["replay", "x"]), replay.OPTIONS, {}, None)


def _day_ends(snapshots: Path) -> list[dict[str, object]]:
    manifests = [json.loads(p.read_text()) for p in snapshots.glob("*/manifest.json")]
    return [m for m in manifests if m.get("trigger") == "day_end"]


def _train(args: list[str], env: dict[str, str], snapshots: Path, log: Path, want: int) -> None:
    """One trainer per model until each has published `want` day-end snapshots."""
    procs = []
    for model in MODELS.split(","):
        model_args = [*args, "--model", model, "--store-dir", str(snapshots.parent / "store")]
        procs.append(
            subprocess.Popen(
                [FMSTREAM, "train", *model_args],
                env=env,
                stderr=log.with_suffix(f".{model}.log").open("wb"),
            )
        )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            done = [len(_day_ends(snapshots / m)) >= want for m in MODELS.split(",")]
            if all(done):
                break
            assert all(p.poll() is None for p in procs), "a trainer died"
            time.sleep(0.2)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=60)
    for model in MODELS.split(","):
        assert len(_day_ends(snapshots / model)) >= want, (snapshots / model, log)


def test_next_day_holdout_equals_the_replays_on_the_same_events_in_order(
    broker: EmbeddedBroker,
    make_topics: Callable[[int], TopicSettings],
    tmp_path: Path,
) -> None:
    log = tmp_path / "log"
    ran = run_fmstream(
        "simulate", "--days", "3", "--impressions-per-day", "3000", "--out", str(log)
    )
    assert ran.returncode == 0, ran.stderr
    small = [*SMALL, "--log-level", "WARNING"]
    offline = tmp_path / "replay"
    ran = run_fmstream("replay", str(log), "--out", str(offline), "--models", MODELS, *small)
    assert ran.returncode == 0, ran.stderr
    periods = json.loads((offline / "replay.json").read_text())["periods"]
    assert len(periods) == 3

    # The replay's labeled events, in its order, on one partition.
    topics = make_topics(1)
    settings = _replay_settings()
    _, events = joined_log(log, settings, settings.train.seed)
    producer = LabeledProducer(broker.client_options, topics.labeled)
    producer.batches(list(events), partition=0, size=500)
    producer.flush()
    producer.close()

    env = {**os.environ, **topic_env(topics)}
    kafka = ["--bootstrap", broker.client_options.bootstrap_servers, "--kafka-profile", "local"]
    snapshots = tmp_path / "snapshots"
    train = [
        *kafka,
        *small,
        "--config",
        str(offline / "features.toml"),  # the schema the replay learned with
        "--device",
        "cpu",
        "--snapshot-dir",
        str(snapshots),
        # Batches are cut by count and at midnight only, as the replay cuts them.
        "--max-batch-wait-ms",
        "600000",
    ]
    _train(train, env, snapshots, tmp_path / "train", want=2)

    out = tmp_path / "evaluation"
    for period in periods[1:]:
        day = period["start_ms"] // DAY_MS
        ran = run_fmstream(
            "evaluate",
            "--once",
            "--day",
            str(day),
            "--log",
            str(log),
            "--snapshots",
            str(snapshots),
            "--models",
            MODELS,
            "--out",
            str(out),
        )
        assert ran.returncode == 0, ran.stderr
        for model in MODELS.split(","):
            row = json.loads((out / model / f"{date_of(day)}.json").read_text())
            expected = period["models"][PAPER[model]]["holdout"]
            holdout = row["holdout"]
            assert holdout["count"] == expected["count"] == period["events"]
            assert holdout["snapshot_newest_ms"] == period["snapshot_newest_ms"]
            assert holdout["auc"] == pytest.approx(expected["auc"], abs=1e-6), model
            assert holdout["auc_bound"] == 0.0  # exact, as the replay's is at this size
            assert holdout["logloss"] == pytest.approx(expected["logloss"], abs=1e-4), model
