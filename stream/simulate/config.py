"""Parameters of the simulated world and its delivery anomalies."""

from __future__ import annotations

from dataclasses import dataclass, fields

from stream.errors import SimulationConfigError

# Monday 2026-01-05 00:00 UTC: days start on a weekday boundary so `weekday` is readable.
DEFAULT_START_MS = 1_767_571_200_000


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that determines a simulation; equal configs give equal bytes.

    Rates are shares: `late_share` of clicks arrive after the attribution
    window, `duplicate_click_rate` of clicks are delivered twice,
    `duplicate_impression_rate` of impressions are delivered twice,
    `orphan_click_rate` extra clicks (relative to real clicks) name impressions
    that never arrive, `malformed_rate` extra records (relative to all records)
    are garbage. Delivery order is event time plus up to `jitter_ms` of noise.
    """

    seed: int = 7
    days: int = 8
    impressions_per_day: int = 125_000
    users: int = 50_000
    items: int = 4_000
    new_items_per_day: int = 400
    advertisers: int = 600
    ctr: float = 0.04
    window_ms: int = 30 * 60_000
    late_share: float = 0.02
    click_delay_sigma: float = 1.2
    duplicate_click_rate: float = 0.01
    duplicate_impression_rate: float = 0.002
    orphan_click_rate: float = 0.01
    malformed_rate: float = 0.0
    jitter_ms: int = 2_000
    start_ms: int = DEFAULT_START_MS

    def __post_init__(self) -> None:
        positive = ("days", "impressions_per_day", "users", "items", "advertisers", "window_ms")
        for name in positive:
            if getattr(self, name) <= 0:
                raise SimulationConfigError(
                    f"simulate.{name} must be > 0, got {getattr(self, name)}"
                )
        for name in ("new_items_per_day", "jitter_ms", "start_ms", "seed"):
            if getattr(self, name) < 0:
                raise SimulationConfigError(
                    f"simulate.{name} must be >= 0, got {getattr(self, name)}"
                )
        if not 0.0 < self.ctr < 0.5:
            raise SimulationConfigError(f"simulate.ctr must be in (0, 0.5), got {self.ctr}")
        if not 0.0 < self.late_share < 1.0:
            raise SimulationConfigError(
                f"simulate.late_share must be in (0, 1), got {self.late_share}"
            )
        for name in (
            "duplicate_click_rate",
            "duplicate_impression_rate",
            "orphan_click_rate",
            "malformed_rate",
        ):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise SimulationConfigError(f"simulate.{name} must be in [0, 1), got {value}")
        if self.click_delay_sigma <= 0:
            raise SimulationConfigError(
                f"simulate.click_delay_sigma must be > 0, got {self.click_delay_sigma}"
            )

    def as_dict(self) -> dict[str, int | float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
