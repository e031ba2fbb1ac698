"""Which columns of a replayed log became which features: each field's kind and the
distinct values seen, with a warning for a field that looks like a row id.

Counted over the first `LIMIT` labeled events, so it costs nothing on a long log
and its memory is bounded (at most LIMIT values per field).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from stream.events import FeatureValue

LIMIT = 20_000
# A field present in at least this many events whose values are (almost) all different
# is an identifier, not a feature: it only adds rows no later event reads.
ID_MIN_EVENTS, ID_DISTINCT_SHARE = 200, 0.9


def _kind(value: FeatureValue) -> str:
    if isinstance(value, str):
        return "categorical"
    if isinstance(value, list):
        return "multi-valued"
    return "continuous"


class FieldCensus:
    def __init__(self) -> None:
        self.events = 0
        self.kinds: dict[str, set[str]] = {}
        self.present: Counter[str] = Counter()
        self._values: dict[str, set[Any]] = {}

    def add(self, features: Mapping[str, FeatureValue]) -> None:
        if self.events >= LIMIT:
            return
        self.events += 1
        for name, value in features.items():
            if name not in self.kinds:
                self.kinds[name], self._values[name] = set(), set()
            self.kinds[name].add(_kind(value))
            self.present[name] += 1
            self._values[name].add(tuple(value) if isinstance(value, list) else value)

    def fields(self) -> list[dict[str, Any]]:
        return [
            {
                "field": name,
                "kind": "/".join(sorted(kinds)),
                "distinct": len(self._values[name]),
                "present": self.present[name],
            }
            for name, kinds in self.kinds.items()
        ]

    def warnings(self) -> list[str]:
        out = []
        for f in self.fields():
            if f["kind"] == "continuous" or f["present"] < ID_MIN_EVENTS:
                continue
            if f["distinct"] >= ID_DISTINCT_SHARE * f["present"]:
                out.append(
                    f"warning: field {f['field']!r} has {f['distinct']} distinct values in "
                    f"{f['present']} events: a row id or a unique key is no feature; leave it "
                    "out with --categorical/--numeric, or name it a numeric column"
                )
        return out

    def to_json(self) -> dict[str, Any]:
        return {"events": self.events, "fields": self.fields(), "warnings": self.warnings()}


def schema_lines(census: Mapping[str, Any]) -> list[str]:
    """The console's view of the census."""
    lines = [f"schema (first {census['events']} events): field kind distinct-values"]
    lines += [f"  {f['field']:<20} {f['kind']:<12} {f['distinct']}" for f in census["fields"]]
    return lines + list(census["warnings"])
