"""`fmstream bench replay`: a Criteo-format log of N rows replayed with DeepFM at the paper's
settings in a child process: wall time, events/s and the child's peak RSS."""

from __future__ import annotations

import resource
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


def bench_replay(rows: int, periods: int = 7) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fmstream-bench-replay-") as tmp:
        log = Path(tmp) / "criteo.tsv"
        write_criteo_log(log, rows)
        command = [
            str(Path(sys.executable).parent / "fmstream"),
            "replay",
            str(log),
            "--format",
            "criteo",
            "--periods",
            str(periods),
            "--models",
            "deepfm",
            "--out",
            str(Path(tmp) / "out"),
            "--log-level",
            "WARNING",
        ]
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        if result.returncode != 0:
            raise DeployError(f"the replay failed:\n{result.stderr[-2000:]}")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "benchmark": "replay",
        "rows": rows,
        "format": "criteo (tab-separated)",
        "models": "deepfm (k=10, 400-400-400, dropout keep 0.5), RocksDB store",
        "periods": periods,
        "wall_s": round(wall, 1),
        "events_per_s": round(rows / wall),
        "peak_rss_mb": round(peak_kb / 1024, 1),
    }
