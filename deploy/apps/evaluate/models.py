"""The evaluator's view of each model: its snapshot index and its open snapshots."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from deploy.apps.evaluate.choice import SnapshotIndex
from deploy.apps.evaluate.days import Model
from deploy.apps.evaluate.scorer import Scorers
from deploy.apps.train.publish import Gate, Publisher
from deploy.runtime.errors import ConfigError

log = logging.getLogger(__name__)


@contextmanager
def opened_models(
    snapshot_dir: Path,
    names: Sequence[str],
    window_ms: int,
    cache_rows: int,
    required: bool = True,
) -> Iterator[list[Model]]:
    """Each model's snapshots under `snapshot_dir`; the snapshots opened meanwhile are
    closed on exit. A model with no snapshot directory yet is refused when
    `required` (a one-off judgement has nothing to judge with); otherwise its
    trainer has not published yet, and its snapshots are picked up as they appear."""
    missing = [n for n in names if not (snapshot_dir / n).is_dir()]
    if missing and required:
        raise ConfigError(
            f"no snapshots of {', '.join(missing)} under {snapshot_dir} (--snapshots, --models)"
        )
    if missing:
        log.warning(
            "evaluate_no_snapshots_yet models=%s under=%s: waiting for their trainers "
            "to publish (check --snapshots and --models if this persists)",
            ",".join(missing),
            snapshot_dir,
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
