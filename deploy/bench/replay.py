"""`fmstream bench replay`: a Criteo-format log of N rows replayed at the paper's settings
in child processes, through the in-memory and the RocksDB store side by side, and through
the RocksDB store behind a row cache smaller than the log's ids (bounded memory)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from deploy.bench.train import criteo_like_events
from deploy.runtime.errors import DeployError
from stream.logs.formats import CRITEO_CAT, CRITEO_INT

_CHUNK = 50_000


def write_criteo_log(path: Path, rows: int, seed: int = 0) -> None:
    """Tab-separated like the Kaggle release: label, I1..I13, C1..C26, empty = missing."""
    with path.open("w") as f:
        for start in range(0, rows, _CHUNK):
            events, labels = criteo_like_events(min(_CHUNK, rows - start), seed + start)
            for features, label in zip(events, labels.tolist(), strict=True):
                cells = [str(int(label))]
                cells += [_count(features.get(name)) for name in CRITEO_INT]
                cells += [str(features.get(name, "")) for name in CRITEO_CAT]
                f.write("\t".join(cells) + "\n")


def _count(value: Any) -> str:
    return "" if value is None else str(int(value))


# Runs one command and prints its peak RSS (KiB) last on stderr: each child's own.
_MEASURED = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def _replay_once(
    log: Path, out: Path, models: str, store: str, periods: int, cache_rows: int | None = None
) -> dict[str, Any]:
    command = [
        sys.executable, "-c", _MEASURED, str(Path(sys.executable).parent / "fmstream"),
        "replay", str(log), "--format", "criteo", "--periods", str(periods),
        "--models", models, "--store", store, "--store-dir", str(out / "store"),
        "--out", str(out), "--log-level", "WARNING",
    ]  # fmt: skip
    if cache_rows is not None:
        command += ["--cache-rows", str(cache_rows)]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise DeployError(f"the {store} replay failed:\n{result.stderr[-2000:]}")
    overall = {
        model: {part: metrics[part] for part in ("holdout", "progressive")}
        for model, metrics in json.loads((out / "replay.json").read_text())["overall"].items()
    }
    return {
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(int(result.stderr.split()[-1]) / 1024, 1),
        "overall": overall,
    }


def bench_replay(rows: int, models: str, small_cache_rows: int, periods: int = 7) -> dict[str, Any]:
    """The same log replayed through the in-memory store, the RocksDB store, and the
    RocksDB store behind a cache of `small_cache_rows` rows per model, one after the
    other: wall time, events/s and peak RSS of each, the ratios, and whether all gave
    the same metrics (they must: a row evicted from the cache comes back unchanged)."""
    plans = {
        "memory": ("memory", None),
        "rocksdb": ("rocksdb", None),
        "rocksdb_small_cache": ("rocksdb", small_cache_rows),
    }
    with tempfile.TemporaryDirectory(prefix="fmstream-bench-replay-") as tmp:
        log = Path(tmp) / "criteo.tsv"
        write_criteo_log(log, rows)
        runs = {
            name: _replay_once(log, Path(tmp) / name, models, store, periods, cache)
            for name, (store, cache) in plans.items()
        }
    metrics = [run.pop("overall") for run in runs.values()]
    same = all(m == metrics[0] for m in metrics)
    for run in runs.values():
        run["events_per_s"] = round(rows / run["wall_s"])
    runs["rocksdb_small_cache"]["cache_rows"] = small_cache_rows
    return {
        "benchmark": "replay",
        "rows": rows,
        "format": "criteo (tab-separated)",
        "models": models,
        "settings": "k=10, 400-400-400, dropout keep 0.5; RocksDB behind the default row cache",
        "periods": periods,
        "stores": runs,
        "rocksdb_vs_memory_wall": round(runs["rocksdb"]["wall_s"] / runs["memory"]["wall_s"], 2),
        "rocksdb_vs_memory_rss": round(
            runs["rocksdb"]["peak_rss_mb"] / runs["memory"]["peak_rss_mb"], 2
        ),
        "small_cache_vs_memory_rss": round(
            runs["rocksdb_small_cache"]["peak_rss_mb"] / runs["memory"]["peak_rss_mb"], 2
        ),
        "same_metrics": same,
    }
