"""Turns events' feature dicts into hashed ids and values, a batch at a time.

Per field: a categorical string gives id = hash(field, value), x = 1; a
multi-valued list gives one id per value with x = 1/n (mean pooling); a
missing field gives the field's own missing id; a continuous value is either
log-bucketized into a categorical id (`bucket`, the default: the transform
that won Criteo, floor(ln(v)^2) above 2) or kept as the paper's value-scaled
field embedding (`scaled`: one id per field, x = sign(v) ln(1 + |v|)).

The batch is flat, one entry per (example, field, value): `ids`, `x`, and
`slot` = example * F + field. Single-valued fields come first, example-major
(entry b * F_single + f), so models pool them with a reshape; multi-valued
fields follow and are pooled with an `index_add`.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from model.errors import FeatureError
from model.hashing import MISSING, VALUE, feature_id, feature_ids

Kind = Literal["categorical", "continuous", "multi"]
ContinuousMode = Literal["bucket", "scaled"]


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: Kind = "categorical"
    continuous: ContinuousMode = "bucket"


@dataclass(frozen=True)
class FeatureSchema:
    fields: tuple[FieldSpec, ...]

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise FeatureError(f"duplicate field names in schema: {names}")
        if not names:
            raise FeatureError("a feature schema needs at least one field")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


def infer_schema(
    examples: Sequence[Mapping[str, Any]], scaled: Sequence[str] = ()
) -> FeatureSchema:
    """A schema from sample events: lists are multi-valued, numbers continuous, else categorical."""
    kinds: dict[str, Kind] = {}
    for features in examples:
        for name, value in features.items():
            if name in kinds:
                continue
            if isinstance(value, list):
                kinds[name] = "multi"
            elif isinstance(value, int | float) and not isinstance(value, bool):
                kinds[name] = "continuous"
            else:
                kinds[name] = "categorical"
    return FeatureSchema(
        tuple(
            FieldSpec(n, k, "scaled" if n in scaled else "bucket") for n, k in sorted(kinds.items())
        )
    )


@dataclass(frozen=True)
class EncodedBatch:
    """B examples over F fields as N flat entries; shapes: ids, x, slot are [N].

    The first `single_fields * B` entries are the single-valued fields, example-major
    (entry b * single_fields + f), so that gathering their rows yields [B, F, k] directly.
    """

    ids: np.ndarray
    x: np.ndarray
    slot: np.ndarray
    batch_size: int
    num_fields: int
    single_fields: int


def _example_major(columns: list[np.ndarray], batch_size: int, dtype: type) -> np.ndarray:
    """Per-field columns [B] -> one array [B * F] ordered example by example."""
    if not columns:
        return np.empty(0, dtype=dtype)
    return np.stack(columns, axis=1).reshape(batch_size * len(columns))


def bucket_codes(values: np.ndarray) -> np.ndarray:
    """Criteo winners' log-square buckets for counts, as integer codes (NaN = missing -> -1).

    Above 2: floor(ln(v)^2); below -2 the same on |v|, offset to stay distinct;
    in [-2, 2]: floor(v), offset likewise.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        mag = np.floor(np.log(np.abs(values)) ** 2)
    codes = np.where(values > 2.0, mag, np.where(values < -2.0, 1_000_000 + mag, 0.0))
    small = (values >= -2.0) & (values <= 2.0)
    codes = np.where(small, 2_000_002 + np.floor(values), codes)
    codes = np.where(np.isnan(values), -1, codes)
    return codes.astype(np.int64)


class FeatureEncoder:
    """Encodes feature dicts by a schema, hashing a whole column at a time."""

    def __init__(self, schema: FeatureSchema) -> None:
        self.schema = schema
        # Field index order: single-valued fields, then multi-valued ones.
        self.fields = tuple(f for f in schema.fields if f.kind != "multi") + tuple(
            f for f in schema.fields if f.kind == "multi"
        )
        self._single = sum(1 for f in self.fields if f.kind != "multi")
        self._names = tuple(f.name for f in self.fields)
        self._missing = [feature_id(f.name, MISSING) for f in self.fields]
        self._value_id = [feature_id(f.name, VALUE) for f in self.fields]

    def encode(self, batch: Sequence[Mapping[str, Any]]) -> EncodedBatch:
        n_fields = len(self._names)
        b = len(batch)
        ids_cols: list[np.ndarray] = []
        x_cols: list[np.ndarray] = []
        slot_cols: list[np.ndarray] = []
        multi: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        rows = np.arange(b, dtype=np.int64) * n_fields
        ones = np.ones(b, dtype=np.float32)
        for f, (spec, column) in enumerate(zip(self.fields, self._columns(batch), strict=True)):
            if spec.kind == "multi":
                ids, x, row = self._multi(f, spec.name, column)
                multi.append((ids, x, row * n_fields + f))
                continue
            if spec.kind == "continuous":
                values = self._numbers(spec.name, column)
                if spec.continuous == "scaled":
                    ids, x = self._scaled(f, values)
                else:
                    ids, x = self._buckets(f, spec.name, bucket_codes(values)), ones
            else:
                ids, x = self._categorical(f, spec.name, column), ones
            ids_cols.append(ids)
            x_cols.append(x)
            slot_cols.append(rows + f)
        head = [
            _example_major(cols, b, dtype)
            for cols, dtype in ((ids_cols, np.int64), (x_cols, np.float32), (slot_cols, np.int64))
        ]
        return EncodedBatch(
            ids=np.concatenate([head[0], *(m[0] for m in multi)]),
            x=np.concatenate([head[1], *(m[1] for m in multi)]),
            slot=np.concatenate([head[2], *(m[2] for m in multi)]),
            batch_size=b,
            num_fields=n_fields,
            single_fields=self._single,
        )

    def _columns(self, batch: Sequence[Mapping[str, Any]]) -> list[Sequence[Any]]:
        names = self._names
        if len(names) > 1:
            try:
                # One C-level pass per event when every field is present (the common case).
                return list(zip(*map(operator.itemgetter(*names), batch), strict=True)) or [
                    () for _ in names
                ]
            except KeyError:
                pass
        # Some field missing somewhere: one C-level map per event instead.
        return list(zip(*[tuple(map(features.get, names)) for features in batch], strict=True)) or [
            () for _ in names
        ]

    def _categorical(self, f: int, name: str, column: Sequence[Any]) -> np.ndarray:
        if set(map(type, column)) == {str}:
            return feature_ids(name, column)  # the common case: one vectorized pass
        ids = np.full(len(column), self._missing[f], dtype=np.int64)
        present = [i for i, v in enumerate(column) if v is not None]
        values = []
        for i in present:
            v = column[i]
            if isinstance(v, bool) or not isinstance(v, str | int):
                raise FeatureError(
                    f"field {name!r} is categorical but has value {v!r} ({type(v).__name__})"
                )
            values.append(str(v))
        if present:
            ids[present] = feature_ids(name, values)
        return ids

    def _buckets(self, f: int, name: str, codes: np.ndarray) -> np.ndarray:
        # Few distinct buckets per batch: hash those, then gather.
        uniq, inverse = np.unique(codes, return_inverse=True)
        ids = feature_ids(name, [str(c) for c in uniq.tolist()])
        ids[uniq == -1] = self._missing[f]
        return np.asarray(ids[inverse])

    @staticmethod
    def _numbers(name: str, column: Sequence[Any]) -> np.ndarray:
        """The column as float64 with NaN for missing; a non-number is an error.

        numpy's conversion is the fast path; it also accepts numeric strings.
        """
        try:
            values = np.array(column, dtype=np.float64)
            if values.ndim == 1 and not np.isinf(values).any():
                return values
        except (TypeError, ValueError):
            pass
        bad = next(
            (
                v
                for v in column
                if v is not None and (not isinstance(v, int | float) or not math.isfinite(v))
            ),
            column,
        )
        raise FeatureError(f"field {name!r} is continuous but has value {bad!r}")

    def _scaled(self, f: int, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        missing = np.isnan(values)
        clean = np.where(missing, 0.0, values)
        x = (np.sign(clean) * np.log1p(np.abs(clean))).astype(np.float32)
        x[missing] = 1.0
        ids = np.where(missing, self._missing[f], self._value_id[f]).astype(np.int64)
        return ids, x

    def _multi(
        self, f: int, name: str, column: Sequence[Any]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        flat: list[str] = []
        counts = np.zeros(len(column), dtype=np.int64)
        for i, v in enumerate(column):
            if v is None or v == []:
                continue
            if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
                raise FeatureError(f"field {name!r} is multi-valued but has value {v!r}")
            flat.extend(v)
            counts[i] = len(v)
        ids = feature_ids(name, flat) if flat else np.zeros(0, dtype=np.int64)
        rows = np.repeat(np.arange(len(column), dtype=np.int64), counts)
        x = np.repeat(1.0 / np.maximum(counts, 1), counts).astype(np.float32)
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            ids = np.concatenate([ids, np.full(len(empty), self._missing[f], dtype=np.int64)])
            rows = np.concatenate([rows, empty])
            x = np.concatenate([x, np.ones(len(empty), dtype=np.float32)])
        return ids, x, rows
