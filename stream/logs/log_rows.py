"""What a log reader yields: a labeled row, or a row it could not read."""

from __future__ import annotations

from dataclasses import dataclass

from stream.events import FeatureValue


@dataclass(frozen=True, slots=True)
class LogRow:
    """One logged impression with its label; `ts` is None when the log has no time."""

    line: int
    label: int
    ts: int | None
    features: dict[str, FeatureValue]


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int
    reason: str
    source: str = ""  # the file, where a log has several

    @property
    def where(self) -> str:
        return f"{self.source} line {self.line}" if self.source else f"line {self.line}"
