"""The README's promises that the code can check: lists it gives are the code's lists."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from deploy.apps.evaluate.metrics import EvaluateMetrics
from deploy.apps.join.metrics import JoinMetrics
from deploy.apps.serve.metrics import ServeMetrics
from deploy.apps.train.metrics import TrainMetrics
from deploy.batch.metrics import TrainingMetrics
from stream.errors import DEAD_LETTER_REASONS

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_dead_letter_reasons_in_the_readme_are_the_codes() -> None:
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "dead-letter reasons" in line)
    rows = []
    for line in lines[start + 3 :]:
        if not line.strip().startswith("|"):
            break
        reason, meaning = (cell.strip() for cell in line.strip().strip("|").split("|", 1))
        rows.append((reason.strip("`"), meaning))
    assert dict(rows) == DEAD_LETTER_REASONS


def test_every_metric_the_readme_names_is_exported() -> None:
    registry = CollectorRegistry()
    JoinMetrics(registry)
    TrainingMetrics(registry)
    TrainMetrics(registry, "deepfm")
    ServeMetrics(registry)
    EvaluateMetrics(registry).day("deepfm", "2026-01-02", {"holdout": {"auc": 0.7}})
    exported = generate_latest(registry).decode()
    named = set(re.findall(r"fmstream_[a-z_]+[a-z]", README.read_text()))
    assert named and sorted(n for n in named if n not in exported) == []
