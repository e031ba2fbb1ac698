"""Scorer test helpers: real snapshots made quickly, and `fmstream serve` as a real
process on a loopback port."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from deploy.apps.train.publish import DENSE, MANIFEST, Announce, point_latest
from deploy.bench.snapshot_maker import SnapshotMaker
from deploy.local.broker import free_port
from model.features import FeatureSchema, FieldSpec
from tests.trainkit import labeled_events

FMSTREAM = str(Path(sys.executable).with_name("fmstream"))
SCHEMA = FeatureSchema((FieldSpec("user"), FieldSpec("item"), FieldSpec("hour", "continuous")))


def maker(root: Path, announce: Announce | None = None) -> SnapshotMaker:
    return SnapshotMaker(
        root / "snapshots", root / "store", SCHEMA, cache_rows=10_000, announce=announce
    )


def learn(made: SnapshotMaker, n: int, seed: int = 0) -> None:
    events = labeled_events(n, seed=seed, start=made.events)
    for i in range(0, n, 500):
        chunk = events[i : i + 500]
        made.learn([e.features for e in chunk], np.array([e.label for e in chunk], np.float32))


def corrupt_copy(model_dir: Path, of: int, version: int) -> None:
    """A promoted-looking snapshot `version` whose dense weights do not match their
    checksum (a bad disk), named by LATEST."""
    source, target = model_dir / f"{of:012d}", model_dir / f"{version:012d}"
    shutil.copytree(source, target)
    manifest = json.loads((target / MANIFEST).read_text())
    manifest["version"] = version
    (target / MANIFEST).write_text(json.dumps(manifest))
    with (target / DENSE).open("r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02\x03")
    point_latest(model_dir, version)


class Server:
    def __init__(self, process: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.process = process
        self.url = url
        self.log = log
        self.client = httpx.Client(base_url=url, timeout=30)

    def reconnect(self) -> None:
        """Drops kept-alive connections (one may have been to a worker now killed)."""
        self.client.close()
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def score(self, body: Any, token: str | None = None) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.client.post("/v1/score", content=content, headers=headers)

    def metric(self, name: str) -> dict[str, float]:
        """Samples of metric `name` by their label text."""
        out = {}
        for line in self.client.get("/metrics").text.splitlines():
            if line.startswith(name):
                key, _, value = line.rpartition(" ")
                out[key[len(name) :]] = float(value)
        return out

    def wait_ready(self, version: int | None = None, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                ready = self.client.get("/readyz")
                if ready.status_code == 200 and version in (None, ready.json()["version"]):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(
            f"not ready (version {version}) in {timeout_s} s:\n{self.log.read_text()}"
        )

    def worker_versions(self) -> dict[str, float]:
        return self.metric("fmstream_serve_snapshot_version")


@contextmanager
def serving(
    snapshots: Path, log: Path, args: Sequence[str] = (), env: dict[str, str] | None = None
) -> Iterator[Server]:
    """`fmstream serve` on a free port until the block ends; then SIGTERM, and it must
    exit 0."""
    port = free_port()
    argv = [FMSTREAM, "serve", "--snapshots", str(snapshots), "--port", str(port), *args]
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env or dict(os.environ)
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            try:
                server.client.get("/healthz")
                break
            except httpx.TransportError:
                time.sleep(0.2)
        yield server
    finally:
        server.client.close()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == 0, log.read_text()
