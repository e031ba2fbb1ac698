"""Publishing: a consistent model snapshot, checked by the gate, promoted by `LATEST`.

`<snapshot-dir>/<model>/<version>/` holds `rows/` (a RocksDB checkpoint of the
store, which also carries the trainer state written with the rows), `dense.pt`
(the dense weights, tensors only) and `manifest.json` (DESIGN.md: Snapshots). A
snapshot is written as `.<version>.partial` and renamed when complete; a refused
one is kept with the gate's reasons in its manifest and `LATEST` stays. `LATEST`
is replaced by rename, so a reader sees the old version or the new one.

A promoted snapshot also carries `delta-<parent>-<version>`: the rows changed
and deleted since the last promoted snapshot (`store.delta`), for a scorer
that holds the parent. The store's change log is restarted only by a promoted
snapshot, so a refused one in between is skipped over, not lost.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from deploy.apps.train.checkpoint import model_description, schema_to_json
from deploy.apps.train.retention import DEFAULT_RETENTION, Retention
from deploy.runtime.errors import DeployError
from model.ctr_metrics import BinaryMetrics
from model.features import FeatureSchema
from model.trainer import OnlineTrainer
from store.admission import Admission
from store.cache import CachedEmbeddings, ChangedRows
from store.delta import export_delta
from store.row_store import RowStore

MANIFEST, DENSE, ROWS, LATEST = "manifest.json", "dense.pt", "rows", "LATEST"
# rocksdict rewrites its settings file on every open, read-only ones included (the
# same bytes, but a reader hashing it meanwhile sees it half written); it is no data.
# The evaluator's side file (`EVALUATION`): written next to the manifest of a day-end
# snapshot after the next day closed, so it is not part of what the snapshot was.
EVALUATION = "evaluation.json"
_UNCHECKED = ("rocksdict-config.json", EVALUATION)
# A RocksDB checkpoint hard-links the store's immutable SST files, so consecutive
# snapshots share most of theirs: (device, inode, size, mtime_ns) -> sha256 of files
# already hashed lets a scorer hash only what is new.
Verified = dict[tuple[int, int, int, int], str]
DELTA_BASE = "snapshot_delta_base"  # store extra: the snapshot its change log starts at


@dataclass(frozen=True)
class Gate:
    """A snapshot is promoted when its dense weights are finite and, over the
    interval's progressive-validation events (when there are `min_events`), its
    mean prediction is within [min_calibration, max_calibration] of the observed
    rate and its normalized entropy is at most `max_ne_regression` above the mean
    of the last promoted snapshots' (`trailing`)."""

    min_calibration: float = 0.5
    max_calibration: float = 2.0
    max_ne_regression: float = 0.05
    min_events: int = 1_000

    def reasons(
        self, trainer: OnlineTrainer, interval: BinaryMetrics, trailing: list[float]
    ) -> list[str]:
        out = []
        if not all(bool(torch.isfinite(t).all()) for t in trainer.model.state_dict().values()):
            out.append("non_finite_weights")
        calibration = interval.calibration
        judged = interval.count >= self.min_events and math.isfinite(calibration)
        if judged and not self.min_calibration <= calibration <= self.max_calibration:
            out.append(
                f"calibration {calibration:.3f} outside "
                f"[{self.min_calibration}, {self.max_calibration}]"
            )
        ne = interval.normalized_entropy
        if trailing and interval.count >= self.min_events and math.isfinite(ne):
            usual = sum(trailing) / len(trailing)
            if ne > usual + self.max_ne_regression:
                out.append(f"ne_regression {ne:.4f} against a trailing {usual:.4f}")
        return out


@dataclass(frozen=True)
class Published:
    version: int
    path: Path
    promoted: bool
    reasons: list[str]


@dataclass(frozen=True)
class Captured:
    """A snapshot taken between two steps, not yet in place (`Publisher.finish`)."""

    version: int
    partial: Path
    manifest: dict[str, Any]
    width: int
    delta_parent: int | None
    unwritten: Unwritten


@dataclass(frozen=True)
class Unwritten:
    """What a model holds beyond its store's last write: the changed rows, and the
    position and extras a checkpoint would write with them (`checkpoint.state`)."""

    rows: ChangedRows
    position: dict[str, Any]
    extras: dict[str, bytes]


Announce = Callable[[str, bytes], None]  # (model, manifest JSON) of a promoted snapshot


class Publisher:
    def __init__(
        self,
        root: Path,
        model: str,
        gate: Gate,
        wall: Callable[[], float],
        announce: Announce | None = None,
        retention: Retention = DEFAULT_RETENTION,
    ) -> None:
        self.model = model
        self.dir = root / model
        self._gate = gate
        self._wall = wall
        self._announce = announce
        self._retention = retention

    def versions(self) -> list[int]:
        if not self.dir.exists():
            return []
        return sorted(int(p.name) for p in self.dir.iterdir() if p.name.isdigit())

    def latest(self) -> int | None:
        path = self.dir / LATEST
        return int(path.read_text()) if path.exists() else None

    def capture(
        self,
        source: CachedEmbeddings,
        checkpointed: tuple[dict[str, Any], dict[str, bytes]],
        trainer: OnlineTrainer,
        schema: FeatureSchema,
        trigger: str,
        interval: BinaryMetrics,
    ) -> Captured:
        """What must happen between two steps: the gate's verdict, a RocksDB checkpoint
        of the store, a copy of the rows `source` holds beyond it, and the dense
        weights, into the next version's `.partial` directory. `checkpointed`: the
        position and extras a checkpoint now would write (`checkpoint.state`). The
        rest (`finish`) touches only that directory, and may run in another thread
        while training goes on; finish one capture before taking the next."""
        position, extras = checkpointed
        unwritten = Unwritten(source.changed(), position, extras)
        store = source.store
        version = (self.versions() or [0])[-1] + 1
        partial = self.dir / f".{version:012d}.partial"
        shutil.rmtree(partial, ignore_errors=True)  # left by a crash mid-publish
        partial.mkdir(parents=True)
        reasons = self._gate.reasons(trainer, interval, self._trailing_ne())
        parent = self._delta_parent(store) if not reasons else None
        store.checkpoint(
            partial / ROWS,
            restart_changes=not reasons,
            extras={DELTA_BASE: str(version).encode()},
        )
        torch.save(trainer.model.state_dict(), partial / DENSE)
        manifest = {
            "version": version,
            "parent": self.latest(),
            "created_s": self._wall(),
            "trigger": trigger,
            "positions": position["labeled"],
            "newest_ms": position["newest_ms"],
            "examples_seen": trainer.examples_seen,
            "model": model_description(trainer.model_config, trainer.config),
            "schema": schema_to_json(schema),
            "admission": _admission(trainer),
            "interval": {k: _json_number(v) for k, v in asdict(interval).items()},
            "gate": {"promoted": not reasons, "reasons": reasons},
        }
        return Captured(version, partial, manifest, store.width, parent, unwritten)

    def finish(
        self, captured: Captured, stream_ms: Callable[[], int | None] = lambda: None
    ) -> Published:
        """Writes the delta (from the checkpoint, whose change log runs from the last
        promoted snapshot), the manifest with every file's checksum, renames the
        snapshot into place, promotes it if the gate passed, and prunes. `stream_ms`:
        the trainer's input event time now, recorded as `promoted_ms` (the evaluator's
        measure of when, in event time, scorers began to serve it)."""
        version, partial, manifest = captured.version, captured.partial, captured.manifest
        manifest["delta"] = None
        copy = RowStore(partial / ROWS, captured.width)
        try:
            # The copy becomes a checkpoint taken at the capture.
            unwritten = captured.unwritten
            known = unwritten.rows
            copy.ingest(
                known.ids,
                known.rows,
                unwritten.position,
                known.counts,
                known.seen,
                unwritten.extras,
            )
            if captured.delta_parent is not None:
                name = f"delta-{captured.delta_parent}-{version}"
                ids = export_delta(copy, partial / name, known)
                manifest["delta"] = {"parent": captured.delta_parent, "file": name, "ids": ids}
        finally:
            copy.close()
        manifest["files"] = checksums(partial)
        now, newest = stream_ms(), manifest["newest_ms"]
        at = newest if now is None else max(now, newest)
        manifest["promoted_ms"] = at if manifest["gate"]["promoted"] else None
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        final = self.path(version)
        partial.rename(final)
        promoted, reasons = manifest["gate"]["promoted"], manifest["gate"]["reasons"]
        if promoted:
            self._promote(version, manifest)
        self.prune()
        return Published(version, final, promoted, reasons)

    def _delta_parent(self, store: RowStore) -> int | None:
        """The promoted snapshot the store's change log runs from, if it is complete:
        its version was noted as the base when it was made, but a crash before its
        rename, or retention since, leaves none to apply a delta to."""
        base = store.extra(DELTA_BASE)
        parent = int(base) if base is not None else None
        known = self.manifest(parent) if parent is not None else None
        return parent if known is not None and known["gate"]["promoted"] else None

    def prune(self) -> list[int]:
        """Deletes the snapshots `Retention` does not keep, and crash leftovers."""
        versions = self.versions()
        manifests = {v: self.manifest(v) for v in versions}
        keep = self._retention.kept(versions, manifests, self.latest())
        doomed = [v for v in versions if v not in keep]
        for v in doomed:
            shutil.rmtree(self.path(v), ignore_errors=True)
        for leftover in self.dir.glob(".*.partial"):
            shutil.rmtree(leftover, ignore_errors=True)
        return doomed

    def manifest(self, version: int) -> dict[str, Any] | None:
        """A snapshot's manifest as written (None if missing or unreadable)."""
        try:
            out: dict[str, Any] = json.loads((self.path(version) / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        return out

    def _trailing_ne(self, last: int = 5) -> list[float]:
        """The interval NE of the last promoted snapshots (from their manifests)."""
        out: list[float] = []
        for version in reversed(self.versions()):
            if len(out) == last:
                break
            manifest = self.manifest(version)
            if manifest is None:
                continue
            ne = manifest["interval"]["normalized_entropy"]
            if manifest["gate"]["promoted"] and ne is not None and math.isfinite(ne):
                out.append(float(ne))
        return out

    def path(self, version: int) -> Path:
        return self.dir / f"{version:012d}"

    def promote(self, version: int) -> dict[str, Any]:
        """Points LATEST at `version` (verified first; an operator may promote one the
        gate refused) and announces it; its manifest."""
        if version not in self.versions():
            raise DeployError(f"no snapshot {version} under {self.dir}; have {self.versions()}")
        manifest = verify(self.path(version))
        self._promote(version, manifest)
        return manifest

    def rollback(self, version: int | None = None) -> int:
        """Moves LATEST back to `version`, or to the newest promoted one before it."""
        current = self.latest()
        if current is None:
            raise DeployError(f"nothing to roll back: no LATEST under {self.dir}")
        earlier = [
            v
            for v in self.versions()
            if v < current and (m := self.manifest(v)) is not None and m["gate"]["promoted"]
        ]
        target = version if version is not None else (earlier[-1] if earlier else None)
        if target is None or target not in earlier:
            raise DeployError(
                f"cannot roll {self.model} back from {current} to {target}: the promoted "
                f"snapshots before it are {earlier}"
            )
        self.promote(target)
        return target

    def _promote(self, version: int, manifest: dict[str, Any]) -> None:
        point_latest(self.dir, version)
        if self._announce is not None:
            self._announce(self.model, json.dumps(manifest, sort_keys=True).encode())


def point_latest(model_dir: Path, version: int) -> None:
    """Makes `LATEST` name `version`, by rename: a reader sees the old one or the new."""
    tmp = model_dir / f".{LATEST}.tmp"
    tmp.write_text(str(version))
    os.replace(tmp, model_dir / LATEST)


def _admission(trainer: OnlineTrainer) -> dict[str, list[int]] | None:
    """The admission thresholds a scorer needs to read rows as the trainer does (by the
    encoder's field order; the sketch's counts travel in the rows' extras)."""
    admission = trainer.id_filter
    if not isinstance(admission, Admission):
        return None
    return {"thresholds": admission.thresholds.tolist()}


def _json_number(value: Any) -> Any:
    """NaN and infinities are not JSON: an undefined metric is null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def checksums(root: Path, known: Verified | None = None) -> dict[str, str]:
    """sha256 of every file under `root` but the manifest, by relative path; files in
    parallel (hashlib releases the GIL on large blocks). A file in `known` (the same
    inode, size and modification time as one hashed before) is not read again."""
    paths = sorted(
        p for p in root.rglob("*") if p.is_file() and p.name not in (MANIFEST, *_UNCHECKED)
    )
    seen: Verified = {}

    def digest(path: Path) -> str:
        st = path.stat()
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        found = known.get(key) if known is not None else None
        seen[key] = found or _sha256(path)
        return seen[key]

    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        digests = list(pool.map(digest, paths))
    if known is not None:  # what this snapshot holds: bounded by one snapshot's files
        known.clear()
        known.update(seen)
    return {str(p.relative_to(root)): d for p, d in zip(paths, digests, strict=True)}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(snapshot: Path, known: Verified | None = None) -> dict[str, Any]:
    """The manifest of a complete snapshot whose files all match their checksums
    (`known`: see `checksums`)."""
    try:
        manifest: dict[str, Any] = json.loads((snapshot / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise DeployError(f"the snapshot at {snapshot} has no readable manifest: {exc}") from exc
    actual = checksums(snapshot, known)
    recorded = {k: v for k, v in manifest["files"].items() if Path(k).name not in _UNCHECKED}
    if actual != recorded:
        bad = sorted(set(actual.items()) ^ set(recorded.items()))
        raise DeployError(
            f"the snapshot at {snapshot} does not match its manifest: {len(bad)} files differ "
            f"(first {bad[0][0]})"
        )
    return manifest
