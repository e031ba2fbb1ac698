"""`fmstream bench serve`: one scoring worker on one core under a load generator in
its own process: peak throughput, latency at half of it (1, 100 and 1,000
candidates), and hot swaps under that load (latency around each swap, RSS)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import torch

from deploy.apps.train.publish import DENSE, MANIFEST, checksums, point_latest
from deploy.batch.replay.inputs import CRITEO_SCHEMA
from deploy.bench.loadgen import Answer, Phase, run_phase
from deploy.bench.snapshot_maker import SnapshotMaker
from deploy.bench.train import criteo_like_events
from deploy.local.broker import free_port

_BATCH = 1024
_SIZES = (1, 100, 1000)


def bench_serve(
    seconds: float, swaps: int, swap_interval_s: float, train_events: int
) -> dict[str, Any]:
    out: dict[str, Any] = {"benchmark": "serve", "model": "deepfm", "fields": 39, "workers": 1}
    out["load_before"] = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="fmstream-bench-serve-") as tmp:
        root = Path(tmp)
        made = SnapshotMaker(root / "snapshots", root / "store", CRITEO_SCHEMA)
        # Snapshot 1 is LATEST when the worker starts; the variants come after.
        try:
            _learn(made, train_events, seed=0)
            made.publish()
        finally:
            made.close()
        model_dir = root / "snapshots" / "deepfm"
        versions = _variants(model_dir, swaps)
        with _server(root / "snapshots", root / "serve.log") as (url, pid):
            failed = 0
            for n in _SIZES:
                result, bad = _latency(url, _bodies(n), seconds)
                out[f"candidates_{n}"] = result
                failed += bad
            rate = out["candidates_100"]["peak_rps"] / 2
            out["swap"], bad = _swaps(url, pid, model_dir, versions, rate, swap_interval_s)
            out["failed_requests"] = failed + bad
    steady = out["candidates_100"]["p99_ms"]
    out["swap"]["p99_vs_steady"] = round(out["swap"]["p99_ms"] / steady, 2)
    out["candidates_per_s_per_core"] = round(out["candidates_100"]["peak_rps"] * 100)
    out["load_after"] = os.getloadavg()[0]
    return out


def _learn(made: SnapshotMaker, n: int, seed: int) -> None:
    events, labels = criteo_like_events(n, seed)
    for i in range(0, n, _BATCH):
        made.learn(events[i : i + _BATCH], labels[i : i + _BATCH])


def _bodies(n: int, count: int = 16) -> tuple[bytes, ...]:
    """Requests of `n` candidates from traffic the model did not learn."""
    events, _ = criteo_like_events(n * count, seed=99)
    return tuple(orjson.dumps({"candidates": events[i * n : (i + 1) * n]}) for i in range(count))


@contextmanager
def _server(snapshots: Path, log: Path) -> Iterator[tuple[str, int]]:
    """`fmstream serve` with one worker, pinned to core 0 when there are two or more
    (the load generator and this process take the others); its URL and worker pid."""
    port = free_port()
    fmstream = str(Path(sys.executable).with_name("fmstream"))
    argv = [fmstream, "serve", "--snapshots", str(snapshots), "--port", str(port)]
    argv += ["--workers", "1", "--poll-only", "--poll-s", "0.5", "--max-candidates", "1000"]
    argv += ["--max-body-bytes", str(16 << 20), "--cache-rows", "1000000", "--max-fields", "64"]
    pin = (os.cpu_count() or 1) >= 2

    def pinned() -> None:
        if pin:
            os.sched_setaffinity(0, {0})

    with log.open("wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, preexec_fn=pinned)
    if pin:
        os.sched_setaffinity(0, set(range(1, os.cpu_count() or 2)))
    url = f"http://127.0.0.1:{port}"
    try:
        yield url, _ready_worker(url, process, log)
    finally:
        process.terminate()
        process.wait(timeout=60)


def _ready_worker(url: str, process: subprocess.Popen[bytes], log: Path) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"fmstream serve exited:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                metrics = httpx.get(f"{url}/metrics").text
                found = re.search(r'fmstream_serve_snapshot_version\{pid="(\d+)"\}', metrics)
                if found:
                    return int(found.group(1))
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"fmstream serve was not ready in 120 s:\n{log.read_text()[-2000:]}")


def _latency(url: str, bodies: tuple[bytes, ...], seconds: float) -> tuple[dict[str, Any], int]:
    run_phase(url, Phase(bodies, 2.0, 4))  # warm the worker's cache and the allocator
    peak = run_phase(url, Phase(bodies, seconds, 4))
    rps = sum(1 for a in peak if a[2] == 200) / seconds
    paced = run_phase(url, Phase(bodies, seconds, 4, rate=rps / 2))
    result = {"peak_rps": round(rps, 1), "at_rps": round(rps / 2, 1), **_quantiles(paced)}
    return result, _failed(peak) + _failed(paced)


def _quantiles(answers: list[Answer]) -> dict[str, float]:
    ms = np.array([a[1] for a in answers if a[2] == 200]) * 1000
    if not len(ms):
        return {"requests": 0}
    p50, p99, p999 = np.percentile(ms, [50, 99, 99.9])
    return {
        "requests": len(ms),
        "p50_ms": round(float(p50), 2),
        "p99_ms": round(float(p99), 2),
        "p999_ms": round(float(p999), 2),
    }


def _failed(answers: list[Answer]) -> int:
    return sum(1 for a in answers if a[2] != 200)


def _variants(model_dir: Path, count: int) -> list[int]:
    """`count` more promotable versions of snapshot 1: its rows hard-linked, its dense
    weights perturbed, its manifest renumbered with their checksums. A worker loads
    each as it would any snapshot (verify every file, open, warm); making them all
    beforehand keeps the load generator's core free during the swaps."""
    first = model_dir / f"{1:012d}"
    manifest = orjson.loads((first / MANIFEST).read_bytes())
    dense = torch.load(first / DENSE, weights_only=True)
    versions = []
    for version in range(2, count + 2):
        path = model_dir / f"{version:012d}"
        shutil.copytree(first, path, copy_function=os.link)
        for linked in (DENSE, MANIFEST):  # rewritten: a write through a link changes `first`
            (path / linked).unlink()
        nudged = {k: v + 1e-4 * version if v.is_floating_point() else v for k, v in dense.items()}
        torch.save(nudged, path / DENSE)
        manifest = {**manifest, "version": version, "parent": version - 1}
        manifest["files"] = checksums(path)
        (path / MANIFEST).write_bytes(orjson.dumps(manifest))
        versions.append(version)
    return versions


def _swaps(
    url: str, pid: int, model_dir: Path, versions: list[int], rate: float, interval_s: float
) -> tuple[dict[str, Any], int]:
    """Paced load at `rate` while `LATEST` moves to the next version every `interval_s`;
    latency of the requests due within a second after each move, and the worker's RSS
    just before each move (the previous swap long done)."""
    promoted: list[float] = []
    rss: list[int] = []
    stop = threading.Event()

    def promote() -> None:
        for version in versions:
            if stop.wait(interval_s):
                return
            rss.append(_rss_kb(pid))
            point_latest(model_dir, version)
            promoted.append(time.perf_counter())

    thread = threading.Thread(target=promote, daemon=True)
    thread.start()
    seconds = len(versions) * interval_s + 3.0
    answers = run_phase(url, Phase(_bodies(100), seconds, 4, rate=rate))
    stop.set()
    thread.join()
    around = [a for a in answers if any(0 <= a[0] - t <= 1.0 for t in promoted)]
    served = {a[3] for a in answers if a[2] == 200}
    start = rss[min(3, len(rss) - 1)] if rss else 0
    result = {
        "swaps": len(promoted),
        "interval_s": interval_s,
        "versions_served": len(served),
        **_quantiles(around),
        "rss_mb_at_swap_3": round(start / 1024, 1),
        "rss_mb_end": round(rss[-1] / 1024, 1) if rss else 0.0,
        "rss_growth": round(rss[-1] / start - 1, 4) if start else None,
        "whole_phase": _quantiles(answers),
    }
    return result, _failed(answers)


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
