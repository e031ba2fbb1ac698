"""`fmstream serve`'s processes: uvicorn's supervisor and N scoring workers on one port.

The supervisor binds the socket once and starts the workers (spawned, each
with its own copy of `WorkerApp`); it replaces a worker that dies or stops
answering its health check, and on SIGTERM stops them, each finishing the
requests it has in flight.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import uvicorn
from starlette.applications import Starlette
from uvicorn.supervisors import Multiprocess

from deploy.apps.serve.app import Scoring, build_app
from deploy.apps.serve.current import Current
from deploy.apps.serve.follow import Announcements, Follower
from deploy.apps.serve.metrics import MULTIPROC_ENV, ServeMetrics, forget_dead_workers
from deploy.apps.serve.requests import Limits
from deploy.apps.serve.snapshot import load
from deploy.apps.train.publish import Verified
from deploy.runtime.logging_setup import configure_logging
from stream.kafka.labeled_reader import LabeledReader
from stream.kafka.options import ClientOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker needs, passed to it whole (it is pickled into the process)."""

    model_dir: Path
    model: str
    cache_rows: int
    limits: Limits
    poll_s: float
    warm_requests: int
    token: bytes | None
    kafka: ClientOptions | None  # None: follow LATEST by polling alone
    snapshots_topic: str
    log_level: str


class WorkerApp:
    """The ASGI app a worker runs: built on first call, inside the worker process."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self._app: Starlette | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            self._app = _worker(self.config)
        await self._app(scope, receive, send)

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.config = state["config"]
        self._app = None


def _worker(config: WorkerConfig) -> Starlette:
    configure_logging(config.log_level)
    torch.set_num_threads(1)
    forget_dead_workers()
    current = Current()
    metrics = ServeMetrics()
    verified: Verified = {}  # only the follower's thread loads
    scoring = Scoring(
        config.model, current, config.limits, metrics, config.token, time.time, deque(maxlen=4)
    )
    follower = Follower(
        config.model_dir,
        current,
        lambda version: load(config.model_dir, version, config.cache_rows, known=verified),
        lambda loaded: scoring.warm(loaded, config.warm_requests),
        config.poll_s,
        metrics,
    )
    announcements = None
    if config.kafka is not None:
        options, topic = config.kafka, config.snapshots_topic
        announcements = Announcements(
            lambda: LabeledReader(options, topic, max_poll_records=50),
            follower.wake,
            config.poll_s,
        )

    def start() -> None:
        # Before the worker accepts a connection: one that has a snapshot to load does
        # not take requests (on the shared port) only to answer 503.
        follower.check()
        follower.start()
        if announcements is not None:
            announcements.start()

    def stop() -> None:
        if announcements is not None:
            announcements.stop()
        follower.stop()
        current.close()

    return build_app(scoring, start, stop)


def run_workers(
    config: WorkerConfig, host: str, port: int, workers: int, shutdown_timeout_s: float
) -> None:
    """Serves until SIGTERM or SIGINT."""
    with tempfile.TemporaryDirectory(prefix="fmstream-serve-metrics-") as metrics_dir:
        os.environ[MULTIPROC_ENV] = metrics_dir  # inherited by the spawned workers
        server = uvicorn.Config(
            WorkerApp(config),
            host=host,
            port=port,
            workers=workers,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,
            log_config=None,
            timeout_graceful_shutdown=int(shutdown_timeout_s),
        )
        sock = server.bind_socket()
        log.info("serving %s on http://%s:%d with %d worker(s)", config.model, host, port, workers)
        try:
            Multiprocess(server, sockets=[sock]).run()
        finally:
            sock.close()
