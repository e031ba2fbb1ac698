"""`fmstream bench quality`: LR, FM and DeepFM replayed over a fixed set of logs with
known failure modes, several seeds each; per log and model the holdout metrics'
mean and standard deviation, and whether the paper's ordering held.

Each replay runs `fmstream replay` in a child process (the command a user runs)
and reads its `replay.json`. Generated logs are written per seed, so the seed
varies the data as well as the model's initialization.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.runtime.errors import DeployError
from stream.simulate.planted import (
    CRITEO_LIKE_LOG,
    LOW_CTR_LOG,
    LOW_CTR_WIDE_LOG,
    PAIRS_LOG,
    PlantedLog,
    write_planted_log,
)

MODELS = ("LR", "FM", "DeepFM")
METRICS = ("auc", "logloss", "normalized_entropy", "calibration")
_CSV = ["--format", "csv", "--label", "label", "--time", "ts", "--time-format", "ms"]


@dataclass(frozen=True)
class QualityLog:
    """A log to judge on: `write(dir, seed)` makes it and returns the replay arguments
    that read it."""

    name: str
    about: str
    write: Callable[[Path, int], list[str]]


def _planted(spec: PlantedLog) -> Callable[[Path, int], list[str]]:
    def write(directory: Path, seed: int) -> list[str]:
        path = directory / f"{spec.name}.csv"
        write_planted_log(spec, path, seed)
        return [str(path), *_CSV, "--period", "1d"]

    return write


def _sample(name: str, periods: int) -> Callable[[Path, int], list[str]]:
    def write(directory: Path, seed: int) -> list[str]:
        path = Path(__file__).resolve().parents[2] / "tests" / "data" / name
        if not path.exists():
            raise DeployError(f"bench quality needs {path} (in the source tree)")
        return [str(path), "--periods", str(periods)]

    return write


def _simulated(directory: Path, seed: int) -> list[str]:
    out = directory / "sim"
    args = ["--days", "3", "--impressions-per-day", "30000", "--seed", str(seed)]
    _fmstream(["simulate", "--out", str(out), *args])
    return [str(out)]


LOGS = (
    QualityLog(
        "planted-pairs",
        f"{PAIRS_LOG.rows} rows, 12 fields, 6 planted pairwise interactions, CTR 4%, 6 days",
        _planted(PAIRS_LOG),
    ),
    QualityLog(
        "low-ctr",
        f"{LOW_CTR_LOG.rows} rows, 5 fields (80 items, position), CTR 0.4%, 7 days",
        _planted(LOW_CTR_LOG),
    ),
    QualityLog(
        "low-ctr-wide",
        f"{LOW_CTR_WIDE_LOG.rows} rows, the low-CTR log plus 60 weak 10-value fields",
        _planted(LOW_CTR_WIDE_LOG),
    ),
    QualityLog(
        "criteo-like",
        f"{CRITEO_LIKE_LOG.rows} rows, 39 fields (26 categorical, 13 bucketized), CTR 25%, 5 days",
        _planted(CRITEO_LIKE_LOG),
    ),
    QualityLog("simulated", "3 simulated days of 30,000 impressions, CTR 4%", _simulated),
    QualityLog("criteo-sample", "200 real Criteo rows, 2 periods", _sample("criteo_sample.txt", 2)),
    QualityLog("avazu-sample", "100 real Avazu rows, 2 periods", _sample("avazu_sample.txt", 2)),
)


def _fmstream(args: list[str]) -> None:
    command = [str(Path(sys.executable).parent / "fmstream"), *args, "--log-level", "WARNING"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise DeployError(f"{' '.join(args[:2])} failed:\n{result.stderr[-2000:]}")


def _replay(log: QualityLog, seed: int, extra: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fmstream-bench-quality-") as tmp:
        read = log.write(Path(tmp), seed)
        models = ",".join(m.lower() for m in MODELS)
        args = ["replay", *read, "--models", models, "--store", "memory"]
        _fmstream([*args, "--train-seed", str(seed), "--out", f"{tmp}/out", *extra])
        report: dict[str, Any] = json.loads(Path(f"{tmp}/out/replay.json").read_text())
    return report


def _spread(values: list[float]) -> dict[str, float]:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.fmean(values), 4), "sd": round(sd, 4)}


def summarize(log: QualityLog, reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Per model: holdout metrics over all periods and in the last one (mean ± sd over
    seeds), the worst period's NE; and in how many seeds DeepFM > FM > LR held."""
    models: dict[str, Any] = {}
    for model in MODELS:
        overall = [r["overall"][model]["holdout"] for r in reports]
        last = [r["periods"][-1]["models"][model]["holdout"] for r in reports]
        worst_ne = [
            max(
                p["models"][model]["holdout"]["normalized_entropy"]
                for p in r["periods"]
                if "holdout" in p["models"][model]
            )
            for r in reports
        ]
        models[model] = {
            "overall": {m: _spread([h[m] for h in overall]) for m in METRICS},
            "last_period": {m: _spread([h[m] for h in last]) for m in METRICS},
            "worst_period_ne": _spread(worst_ne),
        }
    held = 0
    for r in reports:
        auc = {m: r["overall"][m]["holdout"]["auc"] for m in MODELS}
        held += auc["DeepFM"] > auc["FM"] > auc["LR"]
    return {
        "log": log.name,
        "about": log.about,
        "models": models,
        "ordering_held": f"{held}/{len(reports)}",
    }


def bench_quality(seeds: int, extra: list[str] | None = None) -> dict[str, Any]:
    results = []
    for log in LOGS:
        reports = [_replay(log, seed, extra or []) for seed in range(1, seeds + 1)]
        results.append(summarize(log, reports))
    return {
        "benchmark": "quality",
        "models": list(MODELS),
        "seeds": seeds,
        "holdout": "each period scored by the models as they were at the end of the one before",
        "logs": results,
    }
