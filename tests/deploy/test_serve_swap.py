"""Hot swap under load: a client scores without pause while 20 snapshots are published
(two corrupt, one refused and named by LATEST anyway), then a rollback. No request
fails, each names a version promoted by then, and the bad ones are never served."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from deploy.apps.train.clients import open_announcer
from deploy.apps.train.publish import point_latest
from deploy.local.broker import EmbeddedBroker
from deploy.settings.tables import TopicSettings
from model.ctr_metrics import BinaryMetrics
from tests.clikit import run_fmstream
from tests.servekit import Server, corrupt_copy, learn, maker, serving
from tests.trainkit import topic_env

POLL_S = 2.0
CORRUPT, REFUSED = (5, 12), 9
BAD_INTERVAL = BinaryMetrics(10_000, 1_000, 0.5, 1.0, 1.0, 5.0)  # predicts 5x the clicks


class Load:
    """A closed-loop client on its own connection, recording every answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[tuple[float, int, int | None]] = []  # received, status, version
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        body = {
            "context": {"hour": 3},
            "candidates": [{"user": f"u{i}", "item": "i1"} for i in range(20)],
        }
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                try:
                    answer = client.post("/v1/score", json=body)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                version = answer.json().get("version") if answer.status_code == 200 else None
                self.answers.append((time.monotonic(), answer.status_code, version))


def test_twenty_swaps_under_load_fail_no_request_and_a_rollback_reaches_every_worker(
    broker: EmbeddedBroker,
    make_topics: Callable[[int], TopicSettings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topics = make_topics(1)
    env = topic_env(topics)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    producer, announce = open_announcer(broker.client_options, topics.snapshots)
    made = maker(tmp_path, announce)
    model_dir = tmp_path / "snapshots" / "deepfm"
    kafka = ["--bootstrap", broker.client_options.bootstrap_servers, "--kafka-profile", "local"]
    promoted_from: dict[int, float] = {}  # version -> a time before LATEST named it
    bad: set[int] = set()
    try:
        learn(made, 2_000)
        promoted_from[made.publish().version] = time.monotonic()
        args = ["--workers", "2", "--poll-s", str(POLL_S), *kafka]
        with serving(tmp_path / "snapshots", tmp_path / "serve.log", args) as server:
            server.wait_ready(1)
            with Load(server.url) as load:
                for i in range(2, 21):
                    learn(made, 500, seed=i)
                    if i in CORRUPT:
                        last = max(promoted_from)
                        corrupt_copy(model_dir, last, i)
                        bad.add(i)
                    elif i == REFUSED:
                        refused = made.publish(BAD_INTERVAL)
                        assert not refused.promoted and refused.version == i
                        point_latest(model_dir, i)  # named by LATEST anyway: still refused
                        bad.add(i)
                    else:
                        before = time.monotonic()
                        published = made.publish()
                        assert published.promoted and published.version == i
                        promoted_from[i] = before
                    time.sleep(POLL_S + 0.5 if i in bad else 0.5)  # a bad one met by a poll
                server.wait_ready(20)
                before = time.monotonic()
                back = run_fmstream(
                    "snapshots", "rollback", "--snapshot-dir", str(tmp_path / "snapshots"), *kafka
                )
                assert back.returncode == 0, back.stderr
                target = int((model_dir / "LATEST").read_text())
                assert target == 19
                _wait_all_workers(server, target, before + POLL_S + 1.0)
                promoted_from[target] = min(promoted_from[target], before)
                time.sleep(1.0)
            assert load.failures == []
            statuses = {status for _, status, _ in load.answers}
            assert statuses == {200}, statuses
            served = [v for _, _, v in load.answers]
            assert not bad & set(served)
            for received, _, version in load.answers:
                assert version is not None and promoted_from[version] <= received
            assert len(set(served)) >= 5 and served[-1] == target
            swaps_failed = server.metric("fmstream_serve_swap_failures_total")
            assert swaps_failed['{stage="load"}'] == 2 * len(bad)  # each worker skipped each once
    finally:
        made.close()
        producer.close()


def _wait_all_workers(server: Server, version: int, deadline: float) -> None:
    while True:
        versions = server.worker_versions()
        if len(versions) == 2 and set(versions.values()) == {float(version)}:
            return
        assert time.monotonic() < deadline, (versions, server.log.read_text()[-3000:])
        time.sleep(0.1)
