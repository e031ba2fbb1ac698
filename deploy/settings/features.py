"""`[features]`: the feature schema a trainer learns with, declared rather than inferred.

Each key lists fields by name: `categorical` (hashed strings), `continuous`
(numbers, log-bucketized), `scaled` (numbers, the paper's value-scaled field
embedding) and `multi` (lists of strings, mean-pooled). Per-field admission
thresholds stay in `[train] admit_after_fields`, which replay shares.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from deploy.runtime.errors import ConfigError
from model.features import FeatureSchema, FieldSpec

# key -> the FieldSpec its fields get
_KINDS = {
    "categorical": FieldSpec("", "categorical"),
    "continuous": FieldSpec("", "continuous", "bucket"),
    "scaled": FieldSpec("", "continuous", "scaled"),
    "multi": FieldSpec("", "multi"),
}


@dataclass(frozen=True)
class FeatureSettings:
    categorical: str = ""
    continuous: str = ""
    scaled: str = ""
    multi: str = ""

    def __post_init__(self) -> None:
        self.schema()

    def schema(self) -> FeatureSchema | None:
        """The declared schema; None when no field is declared (it is inferred)."""
        fields: dict[str, FieldSpec] = {}
        for key, like in _KINDS.items():
            for name in (n.strip() for n in getattr(self, key).split(",")):
                if not name:
                    continue
                if name in fields:
                    raise ConfigError(f"features: field {name!r} is declared twice")
                fields[name] = FieldSpec(name, like.kind, like.continuous)
        return FeatureSchema(tuple(fields.values())) if fields else None


def _key(field: FieldSpec) -> str:
    if field.kind == "continuous":
        return "scaled" if field.continuous == "scaled" else "continuous"
    return field.kind


def schema_toml(schema: FeatureSchema, thresholds: Mapping[str, int] | None = None) -> str:
    """`schema` as a `[features]` table to paste into a config (and the per-field
    admission thresholds as `[train] admit_after_fields`)."""
    lines = ["[features]"]
    for key in _KINDS:
        names = [f.name for f in schema.fields if _key(f) == key]
        if names:
            lines.append(f"{key} = {json.dumps(','.join(names))}")
    if thresholds:
        spec = ",".join(f"{n}:{c}" for n, c in sorted(thresholds.items()))
        lines += ["", "[train]", f"admit_after_fields = {json.dumps(spec)}"]
    return "\n".join(lines) + "\n"
