"""`fmstream evaluate --once`: next-day holdout and served performance of published
snapshots, read from a real `labeled` topic, checked against a brute-force recount."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deploy.apps.evaluate.choice import SnapshotIndex
from deploy.apps.evaluate.daemon import watermark
from deploy.apps.evaluate.days import DayTable
from deploy.apps.evaluate.models import opened_models
from deploy.apps.evaluate.outputs import date_of
from deploy.apps.serve.snapshot import load
from deploy.bench.snapshot_maker import SnapshotMaker
from deploy.local.broker import EmbeddedBroker
from deploy.settings.tables import TopicSettings
from model.ctr_metrics import binary_metrics
from stream.events import DAY_MS, LabeledEvent
from tests.clikit import run_fmstream
from tests.servekit import FMSTREAM, maker
from tests.trainkit import LabeledProducer, labeled_events, topic_env

WINDOW_MS = 30 * 60_000  # the join's default attribution window
DAY0 = 20_600  # 2026-05-26
PER_DAY = 2_400


def _days(n_days: int) -> list[list[LabeledEvent]]:
    """PER_DAY learnable events per day, spread evenly over each day."""
    out = []
    for d in range(n_days):
        step = DAY_MS // PER_DAY
        events = labeled_events(PER_DAY, seed=d, start=d * PER_DAY)
        start = (DAY0 + d) * DAY_MS
        out.append([dataclasses.replace(e, ts=start + i * step) for i, e in enumerate(events)])
    return out


def _learn(made: SnapshotMaker, events: list[LabeledEvent]) -> None:
    for i in range(0, len(events), 400):
        chunk = events[i : i + 400]
        made.learn([e.features for e in chunk], np.array([e.label for e in chunk], np.float32))


def _publish_days(made: SnapshotMaker, days: list[list[LabeledEvent]]) -> dict[int, int]:
    """Per day: learn its first half, publish (interval), learn the rest, publish the
    day-end snapshot. Returns each version's promoted_ms."""
    promoted = {}
    for events in days:
        half = len(events) // 2
        for part, trigger in ((events[:half], "interval"), (events[half:], "day_end")):
            _learn(made, part)
            done = made.publish(trigger=trigger, newest_ms=part[-1].ts)
            assert done.promoted
            promoted[done.version] = part[-1].ts
    return promoted


@pytest.fixture
def published(tmp_path: Path) -> tuple[Path, list[list[LabeledEvent]], dict[int, int]]:
    days = _days(3)
    made = maker(tmp_path)
    try:
        promoted = _publish_days(made, days[:2])  # versions 1-4; day 2 is never learned
    finally:
        made.close()
    return tmp_path / "snapshots", days, promoted


def test_a_day_is_judged_by_the_previous_days_end_snapshot_and_what_was_served(
    broker: EmbeddedBroker,
    make_topics: Callable[[int], TopicSettings],
    published: tuple[Path, list[list[LabeledEvent]], dict[int, int]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    snapshots, days, promoted = published
    topics = make_topics(2)
    for name, value in topic_env(topics).items():
        monkeypatch.setenv(name, value)
    producer = LabeledProducer(broker.client_options, topics.labeled)
    for d, events in enumerate(days):
        producer.batches(events, partition=d % 2, size=300)
    producer.raw(b"{not json", partition=0, ts=days[0][0].ts)
    producer.flush()
    producer.close()
    out = tmp_path / "evaluation"
    kafka = ["--bootstrap", broker.client_options.bootstrap_servers, "--kafka-profile", "local"]
    common = ["--snapshots", str(snapshots), "--models", "deepfm", "--out", str(out), *kafka]

    ran = run_fmstream("evaluate", "--once", "--day", date_of(DAY0 + 1), *common)
    assert ran.returncode == 0, ran.stderr
    row = json.loads((out / "deepfm" / f"{date_of(DAY0 + 1)}.json").read_text())

    # Holdout: the day-end snapshot of day 0 (version 2), which learned nothing of day 1.
    holdout = row["holdout"]
    assert holdout["snapshot"] == 2 and holdout["promoted"] is True
    assert holdout["snapshot_newest_ms"] < (DAY0 + 1) * DAY_MS
    day1 = days[1]
    labels = np.array([e.label for e in day1], np.float64)
    expected = binary_metrics(labels, _scores(snapshots, 2, day1))
    assert holdout["count"] == PER_DAY == expected.count
    assert holdout["logloss"] == pytest.approx(expected.logloss, abs=1e-9)
    assert abs(holdout["auc"] - expected.auc) <= holdout["auc_bound"] + 1e-12

    # Served: each event by the version promoted last before it (a window behind).
    index = SnapshotIndex(lambda: sorted(promoted), lambda v: _manifest(snapshots, v), WINDOW_MS)
    index.refresh()
    versions = index.served_at(np.array([e.ts for e in day1]))
    # Day 0's interval snapshot for the window after midnight, then its day-end one,
    # then day 1's interval one (its day-end snapshot is served from day 2 on).
    assert set(versions.tolist()) == {1, 2, 3}
    probs = np.empty(len(day1))
    for version in (1, 2, 3):
        sel = np.flatnonzero(versions == version)
        probs[sel] = _scores(snapshots, version, [day1[i] for i in sel])
    served = binary_metrics(labels, probs)
    assert row["served"]["snapshots"] == [1, 2, 3]
    assert row["served"]["logloss"] == pytest.approx(served.logloss, abs=1e-9)
    assert row["skipped_records"] == {"invalid_json": 1}

    # Day 0 has no day-end snapshot before it: the row says so rather than use another.
    ran = run_fmstream("evaluate", "--once", "--day", date_of(DAY0), *common)
    assert ran.returncode == 0, ran.stderr
    first = json.loads((out / "deepfm" / f"{date_of(DAY0)}.json").read_text())
    assert first["holdout"]["snapshot"] is None and first["holdout"]["count"] == 0
    assert "no day-end snapshot" in first["holdout"]["missing"]
    assert first["unscored"]["no_day_end_snapshot"] == PER_DAY
    report = (out / "report.md").read_text()
    assert date_of(DAY0) in report and date_of(DAY0 + 1) in report
    assert (out / "report.png").stat().st_size > 0


def test_served_means_promoted_before_the_impression_by_a_window() -> None:
    manifests: dict[int, dict[str, Any]] = {
        1: {"version": 1, "newest_ms": 1_000, "promoted_ms": 1_000, "gate": {"promoted": True}},
        2: {"version": 2, "newest_ms": 2_000, "promoted_ms": None, "gate": {"promoted": False}},
        3: {"version": 3, "newest_ms": 3_000, "promoted_ms": 3_500, "gate": {"promoted": True}},
    }
    index = SnapshotIndex(lambda: sorted(manifests), lambda v: manifests.get(v), window_ms=100)
    index.refresh()
    at = np.array([1_100, 1_101, 3_600, 3_601, 10_000])
    # At the promotion time plus the window the impression was shown with the old one.
    assert index.served_at(at).tolist() == [-1, 1, 1, 3, 3]


def test_a_day_closes_once_every_partition_carrying_events_has_passed_it() -> None:
    # Partition 1 is a day behind partition 0: the earlier time is the stream's.
    assert watermark({0: 5 * DAY_MS, 1: 4 * DAY_MS}, (0, 1), {0: 0, 1: 0}) == 4 * DAY_MS
    # Partition 2 has carried nothing yet: it holds the time back while records wait
    # in it or its end is unknown, not once it is read to its (empty) end.
    assert watermark({0: 5 * DAY_MS}, (0, 1, 2), {0: 0, 1: 0, 2: 7}) is None
    assert watermark({0: 5 * DAY_MS}, (0, 1, 2), {0: 0, 1: 0}) is None
    assert watermark({0: 5 * DAY_MS}, (0, 1, 2), {0: 0, 1: 0, 2: 0}) == 5 * DAY_MS
    assert watermark({}, (0,), {0: 0}) is None


def test_a_served_snapshot_deleted_after_it_was_listed_is_counted_as_deleted(
    published: tuple[Path, list[list[LabeledEvent]], dict[int, int]],
) -> None:
    snapshots, days, promoted = published
    with opened_models(snapshots, ["deepfm"], WINDOW_MS, 1_000) as models:
        models[0].index.refresh()
        shutil.rmtree(snapshots / "deepfm" / f"{3:012d}")  # retention, meanwhile
        table = DayTable(models)
        table.add(days[1])
        row = table.result(DAY0 + 1, "deepfm")
    served_by_3 = sum(1 for e in days[1] if e.ts > promoted[3] + WINDOW_MS)
    assert row["unscored"] == {"served_snapshot_deleted": served_by_3}
    assert row["served"]["count"] == PER_DAY - served_by_3 > 0
    assert row["holdout"]["count"] == PER_DAY


def _scores(snapshots: Path, version: int, events: list[LabeledEvent]) -> np.ndarray:
    loaded = load(snapshots / "deepfm", version, 10_000, promoted_only=False)
    try:
        return loaded.trainer.predict_proba_many(
            loaded.encoder.encode([e.features for e in events])
        )
    finally:
        loaded.close()


def _manifest(snapshots: Path, version: int) -> dict[str, object]:
    path = snapshots / "deepfm" / f"{version:012d}" / "manifest.json"
    loaded: dict[str, object] = json.loads(path.read_text())
    return loaded


def test_a_killed_evaluator_resumes_and_writes_the_day_an_uninterrupted_run_does(
    broker: EmbeddedBroker,
    make_topics: Callable[[int], TopicSettings],
    published: tuple[Path, list[list[LabeledEvent]], dict[int, int]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    snapshots, days, _ = published
    topics = make_topics(2)
    env = {**os.environ, **topic_env(topics)}
    kafka = ["--bootstrap", broker.client_options.bootstrap_servers, "--kafka-profile", "local"]
    out = tmp_path / "evaluation"
    common = ["--snapshots", str(snapshots), "--models", "deepfm", "--out", str(out), *kafka]
    daemon = [FMSTREAM, "evaluate", *common, "--max-wait-s", "0.5", "--poll-s", "0.2"]
    producer = LabeledProducer(broker.client_options, topics.labeled)
    for events in days[:2]:
        for partition in (0, 1):  # a day closes once both partitions are past it
            producer.batches(events[partition::2], partition=partition, size=100)
    producer.flush()

    # Killed once day 0 is written, somewhere in day 1 or after it.
    first = subprocess.Popen(daemon, env=env, stderr=(tmp_path / "first.log").open("wb"))
    try:
        _wait_for(out / "deepfm" / f"{date_of(DAY0)}.json", first, tmp_path / "first.log")
    finally:
        first.kill()
        first.wait(timeout=30)
    assert not (out / "deepfm" / f"{date_of(DAY0 + 1)}.json").exists()

    second = subprocess.Popen(daemon, env=env, stderr=(tmp_path / "second.log").open("wb"))
    try:
        for partition in (0, 1):  # closes day 1
            producer.batches(days[2][partition::2], partition=partition, size=100)
        producer.flush()
        day1 = out / "deepfm" / f"{date_of(DAY0 + 1)}.json"
        _wait_for(day1, second, tmp_path / "second.log")
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0, (tmp_path / "second.log").read_text()
        producer.close()
    resumed = json.loads(day1.read_text())

    once = tmp_path / "once"
    for name, value in topic_env(topics).items():
        monkeypatch.setenv(name, value)
    args = ["--snapshots", str(snapshots), "--models", "deepfm", "--out", str(once), *kafka]
    ran = run_fmstream("evaluate", "--once", "--day", date_of(DAY0 + 1), *args)
    assert ran.returncode == 0, ran.stderr
    uninterrupted = json.loads((once / "deepfm" / f"{date_of(DAY0 + 1)}.json").read_text())
    for kind in ("holdout", "served"):
        assert resumed[kind] == uninterrupted[kind], kind
    assert resumed["holdout"]["count"] == PER_DAY
    side = snapshots / "deepfm" / f"{2:012d}" / "evaluation.json"
    assert json.loads(side.read_text())["holdout"] == resumed["holdout"]
    load(snapshots / "deepfm", 2, 1_000).close()  # the side file leaves it verifiable


def _wait_for(path: Path, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while not path.exists():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def test_an_evaluator_started_before_any_snapshot_waits_for_the_trainers(
    broker: EmbeddedBroker,
    make_topics: Callable[[int], TopicSettings],
    published: tuple[Path, list[list[LabeledEvent]], dict[int, int]],
    tmp_path: Path,
) -> None:
    snapshots, days, _ = published
    topics = make_topics(2)
    env = {**os.environ, **topic_env(topics)}
    kafka = ["--bootstrap", broker.client_options.bootstrap_servers, "--kafka-profile", "local"]
    later = tmp_path / "later"  # where the snapshots appear once the daemon runs
    out = tmp_path / "evaluation"
    common = ["--snapshots", str(later), "--models", "deepfm", "--out", str(out), *kafka]
    refused = subprocess.run(
        [FMSTREAM, "evaluate", "--once", "--day", date_of(DAY0), *common],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0 and "no snapshots of deepfm" in refused.stderr

    producer = LabeledProducer(broker.client_options, topics.labeled)
    for events in days:
        producer.batches(events, partition=0, size=100)
    producer.close()
    # Long enough for the snapshots to appear; day 2 is never learned, so judging it
    # (which closes day 1) waits this long once.
    daemon = [FMSTREAM, "evaluate", *common, "--max-wait-s", "10", "--poll-s", "0.2"]
    log = tmp_path / "daemon.log"
    process = subprocess.Popen(daemon, env=env, stderr=log.open("wb"))
    try:
        deadline = time.monotonic() + 60
        while "evaluate_no_snapshots_yet" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        time.sleep(2)  # waiting, not judging without a model
        assert process.poll() is None and not out.exists(), log.read_text()
        snapshots.rename(later)
        day1 = out / "deepfm" / f"{date_of(DAY0 + 1)}.json"
        _wait_for(day1, process, log)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text()
    row = json.loads(day1.read_text())
    assert row["holdout"]["snapshot"] == 2 and row["holdout"]["count"] == PER_DAY
    assert row["served"]["snapshots"] == [1, 2, 3]
