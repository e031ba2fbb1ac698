"""The frozen settings object: one dataclass per TOML table.

Each section's fields are the configuration keys: `[simulate] days = 8` in the
file, `FMSTREAM_SIMULATE_DAYS=8` in the environment, `--days 8` on the command
line, in increasing precedence (see `deploy.config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.errors import ConfigError
from stream.simulate import SimulationConfig

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class LogSettings:
    level: str = "INFO"

    def __post_init__(self) -> None:
        if self.level.upper() not in LOG_LEVELS:
            raise ConfigError(
                f"log.level must be one of {', '.join(LOG_LEVELS)}, got {self.level!r}"
            )


@dataclass(frozen=True)
class KafkaSettings:
    """`[kafka]`: the bootstrap servers, a client profile, and kafka-python options
    passed through verbatim (any other key of the table)."""

    bootstrap_servers: str = "127.0.0.1:9092"
    profile: str = "production"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.profile not in ("local", "production"):
            raise ConfigError(
                f"kafka.profile must be 'local' (quick group joins on one local broker) or "
                f"'production', got {self.profile!r}"
            )


@dataclass(frozen=True)
class TopicSettings:
    impressions: str = "impressions"
    clicks: str = "clicks"
    labeled: str = "labeled"
    corrections: str = "labeled.corrections"
    dead_letter: str = "fmstream.dead-letter"
    snapshots: str = "fmstream.snapshots"
    partitions: int = 4

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ConfigError(f"topics.partitions must be >= 1, got {self.partitions}")

    def all(self) -> dict[str, int]:
        names = (
            self.impressions,
            self.clicks,
            self.labeled,
            self.corrections,
            self.dead_letter,
            self.snapshots,
        )
        return {name: self.partitions for name in names}


@dataclass(frozen=True)
class BrokerSettings:
    host: str = "127.0.0.1"
    port: int = 9092
    startup_timeout_s: float = 20.0

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError(f"broker.port must be in 1..65535, got {self.port}")
        if self.startup_timeout_s <= 0:
            raise ConfigError(f"broker.startup_timeout_s must be > 0, got {self.startup_timeout_s}")


@dataclass(frozen=True)
class SimulateOutput:
    """Where `fmstream simulate` writes: files (`out`) or the broker, and how fast."""

    out: Path | None = None
    truth: Path | None = None
    speed: float = 0.0

    def __post_init__(self) -> None:
        if self.speed < 0:
            raise ConfigError(
                f"simulate.speed must be >= 0 (0 = as fast as the sink takes it), got {self.speed}"
            )


@dataclass(frozen=True)
class Settings:
    log: LogSettings
    kafka: KafkaSettings
    topics: TopicSettings
    broker: BrokerSettings
    simulate: SimulationConfig
    simulate_output: SimulateOutput


# TOML table -> the dataclasses whose fields make up its keys, with the
# attribute of `Settings` each one lands in.
SECTIONS: dict[str, tuple[tuple[str, type], ...]] = {
    "log": (("log", LogSettings),),
    "kafka": (("kafka", KafkaSettings),),
    "topics": (("topics", TopicSettings),),
    "broker": (("broker", BrokerSettings),),
    "simulate": (("simulate", SimulationConfig), ("simulate_output", SimulateOutput)),
}
