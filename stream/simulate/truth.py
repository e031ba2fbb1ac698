"""The truth side file: one CSV row per unique impression, never part of any event."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import IO

import numpy as np

from stream.errors import StreamError
from stream.simulate.traffic import Truth

TRUTH_COLUMNS = ("id", "day", "ts", "p_click", "p_label", "clicked", "label")


class TruthWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._out: IO[str] = path.open("w", encoding="utf-8", buffering=1 << 20)
        except OSError as exc:
            raise StreamError(f"cannot write the truth file {path}: {exc}") from exc
        self._out.write(",".join(TRUTH_COLUMNS) + "\n")

    def write(self, truth: Truth) -> None:
        rows = zip(
            truth.ids,
            truth.ts.tolist(),
            truth.p_click.tolist(),
            truth.p_label.tolist(),
            truth.clicked.astype(np.int8).tolist(),
            truth.label.astype(np.int8).tolist(),
            strict=True,
        )
        day = truth.day
        self._out.writelines(
            f"{rid},{day},{ts},{pc:.8g},{pl:.8g},{c},{lab}\n" for rid, ts, pc, pl, c, lab in rows
        )

    def close(self) -> None:
        self._out.close()


def read_truth(path: Path) -> dict[str, np.ndarray]:
    """Reads a truth file into columns (`id` as an object array, the rest numeric)."""
    try:
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            if tuple(header) != TRUTH_COLUMNS:
                raise StreamError(f"{path} is not a truth file: header {header}")
            rows = list(reader)
    except OSError as exc:
        raise StreamError(f"cannot read the truth file {path}: {exc}") from exc
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(TRUTH_COLUMNS)
    types = (object, np.int64, np.int64, np.float64, np.float64, np.int8, np.int8)
    return {
        name: np.asarray(col, dtype=object).astype(t)
        if t is not object
        else np.asarray(col, object)
        for name, col, t in zip(TRUTH_COLUMNS, cols, types, strict=True)
    }
