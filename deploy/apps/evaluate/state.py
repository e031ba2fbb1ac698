"""The evaluator's own state, one file replaced whole: its `labeled` position and the
metrics of the days still open that reflect exactly the records before it. A
restart reads it back and resumes at that position, so no event counts twice."""

from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploy.apps.evaluate.days import DayTable, ModelDay
from deploy.runtime.errors import DeployError
from deploy.runtime.files import replace_bytes
from model.ctr_metrics import Scores

FORMAT = 3


@dataclass
class Progress:
    """Where the evaluator is: next offset and newest event time per partition, the
    days already written, and records skipped (by reason)."""

    positions: dict[int, int] = field(default_factory=dict)
    newest_ms: dict[int, int] = field(default_factory=dict)
    closed: set[int] = field(default_factory=set)
    skipped: Counter[str] = field(default_factory=Counter)


def save(path: Path, progress: Progress, table: DayTable) -> None:
    arrays: dict[str, np.ndarray] = {}

    def put(scores: Scores) -> dict[str, Any]:
        scalars, parts = scores.state()
        names = {}
        for part, array in parts.items():
            names[part] = f"a{len(arrays)}"
            arrays[names[part]] = array
        return {"scalars": scalars, "arrays": names}

    days = [
        {
            "day": day,
            "model": model,
            "holdout_version": entry.holdout_version,
            "holdout_promoted": entry.holdout_promoted,
            "holdout_newest_ms": entry.holdout_newest_ms,
            "served_versions": sorted(entry.served_versions),
            "unscored": dict(entry.unscored),
            "metrics": {kind: put(m) for kind, m in entry.metrics.items()},
        }
        for day, models in table.days.items()
        for model, entry in models.items()
    ]
    meta = {
        "format": FORMAT,
        "positions": {str(p): o for p, o in progress.positions.items()},
        "newest_ms": {str(p): ms for p, ms in progress.newest_ms.items()},
        "closed": sorted(progress.closed),
        "skipped": dict(progress.skipped),
        "days": days,
        "bayes": [{"day": day, **put(m)} for day, m in table.bayes.items()],
    }
    buffer = io.BytesIO()
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    # numpy's stubs read `**arrays` as possibly its `allow_pickle` flag (numpy >= 2.1).
    savez: Any = np.savez
    savez(buffer, **arrays)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_bytes(path, buffer.getvalue())
    except OSError as exc:
        raise DeployError(f"cannot write the evaluator's state {path}: {exc}") from exc


def restore(path: Path, table: DayTable) -> Progress:
    """The saved progress, its open days put back into `table`; an empty one when there
    is no state yet."""
    if not path.exists():
        return Progress()
    try:
        with np.load(path) as saved:
            arrays = {name: saved[name] for name in saved.files}
        meta = json.loads(arrays.pop("meta").tobytes())
    except (OSError, ValueError, KeyError) as exc:
        raise DeployError(f"the evaluator's state {path} is unreadable: {exc}") from exc
    if meta.get("format") != FORMAT:
        raise DeployError(f"{path} is state format {meta.get('format')}, this reads {FORMAT}")

    try:
        _put_back(meta, arrays, table)
    except (ValueError, KeyError, TypeError) as exc:
        raise DeployError(f"the evaluator's state {path} is inconsistent: {exc}") from exc
    return Progress(
        positions={int(p): int(o) for p, o in meta["positions"].items()},
        newest_ms={int(p): int(ms) for p, ms in meta["newest_ms"].items()},
        closed=set(meta["closed"]),
        skipped=Counter(meta["skipped"]),
    )


def _put_back(meta: dict[str, Any], arrays: dict[str, np.ndarray], table: DayTable) -> None:
    def get(entry: dict[str, Any]) -> Scores:
        parts = {part: arrays[name] for part, name in entry["arrays"].items()}
        return Scores.restored(entry["scalars"], parts)

    for d in meta["days"]:
        table.days.setdefault(d["day"], {})[d["model"]] = ModelDay(
            metrics={kind: get(m) for kind, m in d["metrics"].items()},
            holdout_version=d["holdout_version"],
            holdout_promoted=d["holdout_promoted"],
            holdout_newest_ms=d["holdout_newest_ms"],
            served_versions=set(d["served_versions"]),
            unscored=Counter(d["unscored"]),
        )
    for b in meta["bayes"]:
        table.bayes[b["day"]] = get(b)
