"""`fmstream serve` as a real process on loopback: parity with the trainer, the API,
every limit, readiness, and a worker killed with kill -9."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from deploy.apps.serve.requests import Limits, RequestError, parse
from tests.servekit import SCHEMA, Server, learn, maker, serving
from tests.trainkit import labeled_events

LIMITS = ["--max-body-bytes", "20000", "--max-candidates", "50", "--max-fields", "5"]
LIMITS += ["--max-value-bytes", "32", "--poll-s", "0.5", "--poll-only", "--cache-rows", "100"]


def test_scores_equal_the_trainers_and_every_bad_request_answers_its_status(
    tmp_path: Path,
) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    made = maker(tmp_path)
    (tmp_path / "snapshots").mkdir()  # the trainer's directory, nothing published yet
    args = [*LIMITS, "--token-file", str(token)]
    try:
        with serving(tmp_path / "snapshots", tmp_path / "serve.log", args) as server:
            # Nothing promoted yet: alive, not ready, and scoring says why.
            assert server.client.get("/healthz").status_code == 200
            assert server.client.get("/readyz").status_code == 503
            early = server.score({"candidates": [{"user": "u1"}]}, "s3cret")
            assert early.status_code == 503 and early.json()["error"] == "not_ready"

            learn(made, 4_000)
            published = made.publish()
            server.wait_ready(published.version)
            probe = labeled_events(120, seed=7)
            expected = made.trainer.predict_proba_many(
                made.encoder.encode([e.features for e in probe])
            )
            scores = []
            for i in range(0, 120, 40):  # the hour shared as context, user and item per ad
                chunk = probe[i : i + 40]
                body = {
                    "context": {"hour": chunk[0].features["hour"]},
                    "candidates": [
                        {k: v for k, v in e.features.items() if k != "hour"}
                        | ({"hour": e.features["hour"]} if j else {})
                        for j, e in enumerate(chunk)
                    ],
                }
                answer = server.score(body, "s3cret")
                assert answer.status_code == 200, answer.text
                assert answer.json()["model"] == "deepfm"
                assert answer.json()["version"] == published.version
                scores.extend(answer.json()["scores"])
            # Equal up to float32 rounding: a worker's one torch thread and its batches of
            # 40 sum the layers' products in another order than this process does.
            np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-6)

            _check_rejections(server)
            unseen = server.metric("fmstream_serve_unseen_ids_total")
            before = unseen.get('{field="user"}', 0.0)
            new_user = server.score(
                {"candidates": [{"user": "never-seen", "item": "i1"}]}, "s3cret"
            )
            assert new_user.status_code == 200
            after = server.metric("fmstream_serve_unseen_ids_total")['{field="user"}']
            assert after == before + 1

            model = server.client.get("/v1/model").json()
            assert model["version"] == published.version
            assert model["examples_seen"] == 4_000
            assert [f["name"] for f in model["schema"]] == ["hour", "item", "user"]
            assert "/v1/score" in server.client.get("/openapi.json").json()["paths"]
            assert server.client.get("/healthz").status_code == 200  # still healthy
            ok = server.score({"candidates": [{"user": "u1", "item": "i2"}]}, "s3cret")
            assert ok.status_code == 200
    finally:
        made.close()


def _check_rejections(server: Server) -> None:
    """Each bad request answers its status with a message naming what is wrong."""
    good = {"user": "u1", "item": "i1"}
    many_rows = [{"user": f"x{i}", "item": f"y{i}"} for i in range(50)]
    cases: list[tuple[object, str | None, int, str]] = [
        ({"candidates": [good]}, None, 401, "Bearer"),
        ({"candidates": [good]}, "wrong", 401, "Bearer"),
        (b"{not json", "s3cret", 400, "not JSON"),
        (b"x" * 20_001, "s3cret", 413, "max_body_bytes=20000"),
        ({"candidates": [good] * 51}, "s3cret", 413, "max_candidates=50"),
        ({"candidates": [{**good, "a": 1, "b": 2, "c": 3, "d": 4}]}, "s3cret", 422, "max_fields=5"),
        ({"candidates": [{"user": "u" * 40}]}, "s3cret", 422, "max_value_bytes=32"),
        ({"candidates": many_rows}, "s3cret", 413, "touches 101 embedding rows"),
        ({"candidates": [{"colour": "red"}]}, "s3cret", 422, "'colour'"),
        ({"candidates": [{"hour": "noon"}]}, "s3cret", 422, "'hour'"),
        ({"candidates": [{"user": {"nested": 1}}]}, "s3cret", 422, "candidates[0].user"),
        ({"candidates": []}, "s3cret", 422, "non-empty"),
        ({"candidates": [good], "extra": 1}, "s3cret", 422, "extra"),
        ([good], "s3cret", 422, "object"),
    ]
    for body, token, status, named in cases:
        answer = server.score(body, token)
        assert answer.status_code == status, (body, answer.text)
        assert named in answer.json()["message"], (body, answer.text)
    rejected = server.metric("fmstream_serve_rejected_requests_total")
    assert rejected['{reason="max_candidates"}'] == 1
    assert rejected['{reason="unauthorized"}'] == 2


def test_unknown_fields_are_dropped_when_set_to_ignore() -> None:
    limits = Limits(reject_unknown=False)
    body = json.dumps({"context": {"x": 1}, "candidates": [{"user": "u1", "colour": "red"}]})
    assert parse(body.encode(), limits, frozenset(SCHEMA.names)) == [{"user": "u1"}]
    with pytest.raises(RequestError, match=r"context has field\(s\) \['x'\]"):
        parse(body.encode(), Limits(), frozenset(SCHEMA.names))


def test_a_killed_worker_is_replaced_and_readiness_recovers(tmp_path: Path) -> None:
    made = maker(tmp_path)
    try:
        learn(made, 2_000)
        made.publish()
        args = ["--workers", "2", "--poll-s", "0.5", "--poll-only"]
        with serving(tmp_path / "snapshots", tmp_path / "serve.log", args) as server:
            deadline = time.monotonic() + 60
            while len(server.worker_versions()) < 2:
                assert time.monotonic() < deadline, server.log.read_text()
                time.sleep(0.2)
            pids = {int(k.split('"')[1]) for k in server.worker_versions()}
            victim = min(pids)
            os.kill(victim, signal.SIGKILL)
            server.reconnect()
            deadline = time.monotonic() + 60
            while True:
                alive = {int(k.split('"')[1]) for k in server.worker_versions()}
                if victim not in alive and len(alive) == 2:
                    break
                assert time.monotonic() < deadline, server.log.read_text()
                time.sleep(0.3)
            for _ in range(10):  # both workers answer, whichever takes the connection
                server.wait_ready(1)
                assert server.score({"candidates": [{"user": "u1"}]}).status_code == 200
            assert "died" in server.log.read_text()
    finally:
        made.close()
