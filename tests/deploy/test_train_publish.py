"""Publishing from the trainer daemon (in-process, real broker and RocksDB): every
snapshot verifies, opens read-only and scores what the trainer scored; a crash
mid-publish shows nothing; the gate refuses a model trained on flipped labels."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from deploy.apps.train.checkpoint import open_trained
from deploy.apps.train.clients import open_daemon
from deploy.apps.train.daemon import TrainDaemon
from deploy.apps.train.metrics import TrainMetrics
from deploy.apps.train.publish import (
    DENSE,
    LATEST,
    ROWS,
    Gate,
    Published,
    Publisher,
    verify,
)
from deploy.apps.train.retention import Retention
from deploy.local.broker import EmbeddedBroker
from deploy.runtime.errors import DeployError
from deploy.settings.tables import TopicSettings
from deploy.wiring import cached_source
from model.features import FeatureEncoder
from model.trainer import row_layout
from store.delta import apply_delta
from store.row_store import RowStore
from stream.events import DAY_MS
from tests.clikit import run_fmstream
from tests.joinkit import read_all
from tests.trainkit import (
    labeled_events,
    produce_batches,
    settings_for,
    topic_env,
    train_args,
)


def _learn_until(daemon: TrainDaemon, offset: int) -> None:
    while daemon.positions.get(0, (0, 0))[0] < offset:
        batch = daemon.feed.take(5.0)
        assert batch is not None, f"no input at {daemon.positions}"
        daemon.step(batch)


def _publish(daemon: TrainDaemon) -> Published:
    pending = daemon.publish("interval")
    assert pending is not None
    return pending.result()


def _snapshot_scores(
    snapshot: Path, args: list[str], topics: TopicSettings, feats: Sequence[Mapping[str, Any]]
) -> np.ndarray:
    settings = settings_for(args, topics)
    model = settings.train.model_config("deepfm")
    config = settings.train.trainer_config()
    layout = row_layout(model, config)
    rows = RowStore(snapshot / ROWS, layout.width, read_only=True)
    try:
        source = cached_source(rows, layout, 0, 10_000, cache_reads=True)
        trainer, schema = open_trained(rows, model, config, source, lambda s: None)
        return trainer.predict_proba_many(FeatureEncoder(schema).encode(feats))
    finally:
        rows.close()


def _check_delta(root: Path, version: int, scratch: Path, width: int) -> None:
    """The snapshot's delta applied to a copy of its parent gives the snapshot's rows;
    its parent is the last promoted one (a refused snapshot in between is skipped)."""
    manifest = verify(root / f"{version:012d}")
    promoted = [v for v in range(1, version) if verify(root / f"{v:012d}")["gate"]["promoted"]]
    assert verify(root / "000000000001")["delta"] is None  # nothing to start from
    delta = manifest["delta"]
    assert delta["parent"] == promoted[-1] and delta["file"] in manifest["files"]
    shutil.copytree(root / f"{promoted[-1]:012d}" / ROWS, scratch)
    full = RowStore(root / f"{version:012d}" / ROWS, width, read_only=True)
    rebuilt = RowStore(scratch, width)
    try:
        assert apply_delta(rebuilt, root / f"{version:012d}" / delta["file"]) == delta["ids"]
        ids = full.ids()
        assert len(ids) > 0 and np.array_equal(rebuilt.ids(), ids)
        np.testing.assert_array_equal(rebuilt.get_records(ids)[0], full.get_records(ids)[0])
    finally:
        rebuilt.close()
        full.close()


def test_snapshots_verify_score_like_the_trainer_and_the_gate_refuses_flipped_labels(
    broker: EmbeddedBroker,
    make_topics: Callable[[int], TopicSettings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topics = make_topics(1)
    runs = [
        labeled_events(9_000),  # offsets 0-89
        labeled_events(3_000, start=9_000, flipped=True),  # 90-119
        labeled_events(18_000, start=12_000),  # 120-299
    ]
    produce_batches(broker.client_options, topics.labeled, runs, size=100)
    args = train_args(broker.client_options, topics.labeled, topics.dead_letter, tmp_path / "s")
    settings = settings_for(args, topics)
    daemon = open_daemon(settings, TrainMetrics(CollectorRegistry(), "deepfm"))
    root = tmp_path / "s-snapshots" / "deepfm"
    probe = [e.features for e in labeled_events(500, seed=5)]
    with daemon:
        _learn_until(daemon, 90)
        (root / ".000000000002.partial").mkdir(parents=True)  # a crash mid-publish
        _publish(daemon)
        assert (root / LATEST).read_text() == "1"
        first = root / "000000000001"
        manifest = verify(first)
        assert manifest["gate"] == {"promoted": True, "reasons": []}
        offset, index = daemon.positions[0]  # batches of 64 cut records of 100
        assert manifest["positions"] == {"0": [offset, index]}
        assert manifest["examples_seen"] == 100 * offset + index
        assert daemon.trainer is not None and daemon.schema is not None
        expected = daemon.trainer.predict_proba_many(FeatureEncoder(daemon.schema).encode(probe))
        np.testing.assert_array_equal(_snapshot_scores(first, args, topics, probe), expected)

        _learn_until(daemon, 120)  # the flipped stretch
        _publish(daemon)
        refused = verify(root / "000000000002")
        assert refused["gate"]["promoted"] is False
        assert any(r.startswith("ne_regression") for r in refused["gate"]["reasons"])
        assert (root / LATEST).read_text() == "1"

        _learn_until(daemon, 210)  # the model recovers...
        _publish(daemon)
        _learn_until(daemon, 300)  # ...and is good again
        _publish(daemon)
        assert daemon.publish("interval") is None  # nothing learned since: no copy
        last = verify(root / "000000000004")
        assert last["gate"] == {"promoted": True, "reasons": []}
        assert (root / LATEST).read_text() == "4"
        assert sorted(p.name for p in root.iterdir()) == [
            *(f"{v:012d}" for v in range(1, 5)), LATEST,
        ]  # fmt: skip
        width = row_layout(daemon.trainer.model_config, daemon.trainer.config).width
        _check_delta(root, 4, tmp_path / "rebuilt", width)

    # The operator's side: list, verify, roll back (announced), promote a refused one.
    where = ["--snapshot-dir", str(tmp_path / "s-snapshots"), "--model", "deepfm"]
    kafka = ["--bootstrap", broker.client_options.bootstrap_servers, "--kafka-profile", "local"]
    for name, value in topic_env(topics).items():
        monkeypatch.setenv(name, value)
    listed = run_fmstream("snapshots", "list", *where)
    assert listed.returncode == 0 and "<- LATEST" in listed.stdout.splitlines()[4]
    assert "refused: ne_regression" in listed.stdout.splitlines()[2]
    assert run_fmstream("snapshots", "verify", "1", *where).returncode == 0
    promoted = [v for v in (1, 2, 3) if verify(root / f"{v:012d}")["gate"]["promoted"]]
    back = run_fmstream("snapshots", "rollback", *where, *kafka)
    assert back.returncode == 0, back.stderr
    assert (root / LATEST).read_text() == str(promoted[-1])
    assert run_fmstream("snapshots", "promote", "2", *where, *kafka).returncode == 0
    assert (root / LATEST).read_text() == "2"
    announced = read_all(broker.client_options, topics.snapshots)
    versions = [json.loads(r.value)["version"] for r in announced]
    assert versions == [1, 4, promoted[-1], 2]  # promotions, the rollback, the override
    assert {r.key for r in announced} == {b"deepfm"}

    broken = tmp_path / "broken"
    shutil.copytree(root / "000000000004", broken)
    with (broken / DENSE).open("ab") as f:
        f.write(b"x")
    with pytest.raises(DeployError, match="does not match its manifest"):
        verify(broken)


def _fake_snapshot(root: Path, version: int, trigger: str, day: int) -> None:
    path = root / f"{version:012d}"
    path.mkdir(parents=True)
    manifest = {
        "trigger": trigger,
        "newest_ms": day * DAY_MS + 1,
        "gate": {"promoted": True, "reasons": []},
        "interval": {"normalized_entropy": 0.9},
    }
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_retention_keeps_the_newest_latest_and_recent_day_ends(tmp_path: Path) -> None:
    publisher = Publisher(tmp_path, "deepfm", Gate(), time.time, None, Retention(2, 3))
    root = tmp_path / "deepfm"
    for version, day in enumerate(range(10, 16), start=1):  # a day-end snapshot a day
        _fake_snapshot(root, version, "day_end", day)
    for version in range(7, 10):
        _fake_snapshot(root, version, "interval", 15)
    (root / LATEST).write_text("2")  # rolled back to an old one: kept too
    (root / ".000000000010.partial").mkdir()
    assert publisher.prune() == [1, 3, 7]
    # Kept: the newest two (8, 9), LATEST (2), the day ends of days 13-15 (4, 5, 6).
    assert publisher.versions() == [2, 4, 5, 6, 8, 9]
    assert not list(root.glob(".*.partial"))
