"""The trainer's wall-clock schedule: an APScheduler job that asks for a snapshot every
`publish_interval_s` (the daemon takes it between two steps)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from apscheduler.schedulers.background import BackgroundScheduler

from deploy.settings.train import TrainDaemonSettings


class Publishes(Protocol):
    def request_publish(self) -> None: ...


@contextmanager
def scheduled(daemon: Publishes, cfg: TrainDaemonSettings) -> Iterator[BackgroundScheduler]:
    scheduler = BackgroundScheduler(timezone="UTC")
    if cfg.publish_interval_s:
        scheduler.add_job(daemon.request_publish, "interval", seconds=cfg.publish_interval_s)
    scheduler.start()
    try:
        yield scheduler
    finally:
        scheduler.shutdown(wait=False)
