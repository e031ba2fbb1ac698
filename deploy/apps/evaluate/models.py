"""The evaluator's view of each model: its snapshot index and its open snapshots."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from deploy.apps.evaluate.choice import SnapshotIndex
from deploy.apps.evaluate.days import Model
from deploy.apps.evaluate.scorer import Scorers
from deploy.apps.train.publish import Gate, Publisher
from deploy.runtime.errors import ConfigError


@contextmanager
def opened_models(
    snapshot_dir: Path, names: Sequence[str], window_ms: int, cache_rows: int
) -> Iterator[list[Model]]:
    """Each model's snapshots under `snapshot_dir`; the snapshots opened meanwhile are
    closed on exit."""
    missing = [n for n in names if not (snapshot_dir / n).is_dir()]
    if missing:
        raise ConfigError(
            f"no snapshots of {', '.join(missing)} under {snapshot_dir} (--snapshots, --models)"
        )
    models = []
    for name in names:
        # Read only: the publisher's listing and manifests, never its writes.
        publisher = Publisher(snapshot_dir, name, Gate(), time.time)
        index = SnapshotIndex(publisher.versions, publisher.manifest, window_ms)
        index.refresh()
        models.append(
            Model(name, snapshot_dir / name, index, Scorers(snapshot_dir / name, cache_rows))
        )
    try:
        yield models
    finally:
        for model in models:
            model.scorers.close()
