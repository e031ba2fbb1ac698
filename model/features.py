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

import itertools
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal, NoReturn

import numpy as np

from model.errors import FeatureError
from model.grouping import UniqueEntries, unique_entries
from model.hashing import MISSING, VALUE, feature_id, feature_ids, field_seed, hash_strings

Kind = Literal["categorical", "continuous", "multi"]
ContinuousMode = Literal["bucket", "scaled"]


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: Kind = "categorical"
    continuous: ContinuousMode = "bucket"


@dataclass(frozen=True)
class FeatureSchema:
    """The fields, kept in name order: a field's position (its slot in the DNN's
    input, its dense weights) then depends on the fields alone, not on the order a
    reader or a configuration lists them in, so the same rows give the same model
    through any reader."""

    fields: tuple[FieldSpec, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(sorted(self.fields, key=lambda f: f.name)))
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

    @cached_property
    def entries(self) -> UniqueEntries:
        """The entries grouped by id: computed on first use, then shared by scoring,
        learning and every model trained on the batch."""
        return unique_entries(self.ids)

    @cached_property
    def x_by_id(self) -> np.ndarray:
        """x in the order of `entries.order`: the values of the step's transpose."""
        return np.take(self.x, self.entries.order)

    @cached_property
    def unit_x(self) -> bool:
        """Whether every x is 1 (all values categorical): gathers skip multiplying by x."""
        return bool((self.x == 1.0).all())


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
    """Encodes feature dicts by a schema, hashing all categorical fields in one pass."""

    def __init__(self, schema: FeatureSchema) -> None:
        self.schema = schema
        # Field index order: single-valued fields, then multi-valued ones.
        self.fields = tuple(f for f in schema.fields if f.kind != "multi") + tuple(
            f for f in schema.fields if f.kind == "multi"
        )
        self._single = sum(1 for f in self.fields if f.kind != "multi")
        self._names = tuple(f.name for f in self.fields)
        self._missing = np.array([feature_id(f.name, MISSING) for f in self.fields])
        self._value_id = np.array([feature_id(f.name, VALUE) for f in self.fields])
        self._seeds = np.array([field_seed(f.name) for f in self.fields], dtype=np.uint64)

        def of(kind: Kind) -> np.ndarray:
            return np.array(
                [i for i, f in enumerate(self.fields) if f.kind == kind], dtype=np.int64
            )

        self._cat, self._num = of("categorical"), of("continuous")
        self._cat_names = [self._names[f] for f in self._cat.tolist()]
        self._num_names = [self._names[f] for f in self._num.tolist()]
        # Columns of the [B, N] continuous values, by mode, and their fields.
        modes = np.array([self.fields[f].continuous for f in self._num.tolist()], dtype=object)
        self._bucket_cols = np.flatnonzero(modes == "bucket")
        self._scaled_cols = np.flatnonzero(modes == "scaled")
        self._buckets_at = self._num[self._bucket_cols]
        self._scaled_at = self._num[self._scaled_cols]

    def encode(self, batch: Sequence[Mapping[str, Any]]) -> EncodedBatch:
        n_fields, single, b = len(self._names), self._single, len(batch)
        ids = np.empty((b, single), dtype=np.int64)
        x = np.ones((b, single), dtype=np.float32)
        if len(self._cat):
            ids[:, self._cat] = self._categorical(batch)
        if len(self._num):
            self._continuous(batch, ids, x)
        slot = np.arange(b, dtype=np.int64)[:, None] * n_fields + np.arange(single)
        multi = []
        for f in range(single, n_fields):
            name = self._names[f]
            m_ids, m_x, row = self._multi(f, name, [features.get(name) for features in batch])
            multi.append((m_ids, m_x, row * n_fields + f))
        return EncodedBatch(
            ids=np.concatenate([ids.ravel(), *(m[0] for m in multi)]),
            x=np.concatenate([x.ravel(), *(m[1] for m in multi)]),
            slot=np.concatenate([slot.ravel(), *(m[2] for m in multi)]),
            batch_size=b,
            num_fields=n_fields,
            single_fields=single,
        )

    @staticmethod
    def _rows(batch: Sequence[Mapping[str, Any]], names: list[str]) -> list[tuple[Any, ...]]:
        """The values of fields `names`, one tuple per event, None where missing."""
        if len(names) > 1:
            try:  # one C-level call per event when every field is present (the common case)
                return list(map(operator.itemgetter(*names), batch))
            except KeyError:
                pass
        return [tuple(map(features.get, names)) for features in batch]

    def _categorical(self, batch: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Ids [B, C] of the categorical fields."""
        flat = list(itertools.chain.from_iterable(self._rows(batch, self._cat_names)))
        seeds = np.tile(self._seeds[self._cat], len(batch))
        width = len(self._cat)
        try:
            return hash_strings(seeds, flat).reshape(-1, width)  # all strings: one pass
        except TypeError:
            pass
        ids = np.tile(self._missing[self._cat], len(batch))
        present = [i for i, v in enumerate(flat) if v is not None]
        values = []
        for i in present:
            v = flat[i]
            if isinstance(v, bool) or not isinstance(v, str | int):
                name = self._names[self._cat[i % width]]
                raise FeatureError(
                    f"field {name!r} is categorical but has value {v!r} ({type(v).__name__})"
                )
            values.append(str(v))
        if present:
            ids[present] = hash_strings(seeds[present], values)
        return ids.reshape(-1, width)

    def _continuous(
        self, batch: Sequence[Mapping[str, Any]], ids: np.ndarray, x: np.ndarray
    ) -> None:
        """Fills the continuous fields' columns of ids and x."""
        values = self._numbers(batch)
        if len(self._buckets_at):
            codes = bucket_codes(values[:, self._bucket_cols])
            ids[:, self._buckets_at] = self._buckets(self._buckets_at, codes)
        if len(self._scaled_at):
            at = self._scaled_at
            scaled = values[:, self._scaled_cols]
            missing = np.isnan(scaled)
            clean = np.where(missing, 0.0, scaled)
            xs = (np.sign(clean) * np.log1p(np.abs(clean))).astype(np.float32)
            xs[missing] = 1.0
            x[:, at] = xs
            ids[:, at] = np.where(missing, self._missing[at], self._value_id[at])

    def _buckets(self, at: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Ids [B, len(at)] of bucket codes [B, len(at)] of fields `at`."""
        # Few distinct (field, bucket) pairs per batch: hash those, then gather.
        keys = (np.arange(len(at), dtype=np.int64) << 32) + (codes + 1)
        uniq, inverse = np.unique(keys, return_inverse=True)
        field, code = at[uniq >> 32], (uniq & 0xFFFFFFFF) - 1
        hashed = hash_strings(self._seeds[field], [str(c) for c in code.tolist()])
        hashed[code == -1] = self._missing[field[code == -1]]
        return np.asarray(hashed[inverse]).reshape(codes.shape)

    def _numbers(self, batch: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The continuous fields as float64 [B, N], NaN where missing; a non-number is an
        error naming the field. Numeric strings are read as numbers."""
        names = self._num_names
        nans = itertools.repeat(math.nan)
        rows = [tuple(map(features.get, names, nans)) for features in batch]
        try:
            flat = itertools.chain.from_iterable(rows)
            values = np.fromiter(flat, dtype=np.float64, count=len(rows) * len(names))
        except (TypeError, ValueError):  # None, strings, or worse: numpy's general path
            try:
                values = np.array(rows, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError):
                self._raise_not_a_number(rows)
        if np.isinf(values).any():
            self._raise_not_a_number(rows)
        return values.reshape(len(rows), len(names))

    def _raise_not_a_number(self, rows: list[tuple[Any, ...]]) -> NoReturn:
        for c, name in enumerate(self._num_names):
            for v in (row[c] for row in rows):
                if v is None or (isinstance(v, float) and math.isnan(v)):
                    continue
                try:
                    number = float(v)
                except (TypeError, ValueError):
                    number = math.inf
                if math.isinf(number):
                    raise FeatureError(f"field {name!r} is continuous but has value {v!r}")
        raise FeatureError(f"continuous fields {self._num_names} could not be read as numbers")

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
