"""The frozen settings object: one dataclass per TOML table.

Each section's fields are the configuration keys: `[simulate] days = 8` in the
file, `FMSTREAM_SIMULATE_DAYS=8` in the environment, `--days 8` on the command
line, in increasing precedence (see `deploy.settings.resolve`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from deploy.runtime.errors import ConfigError
from deploy.settings.evaluate import EvaluateSettings
from deploy.settings.features import FeatureSettings
from deploy.settings.serve import ServeSettings
from deploy.settings.train import HOUR_MS, TrainDaemonSettings, TrainSettings
from model.zoo import PAPER_NAMES
from stream.join.core import JoinConfig
from stream.join.task import TaskConfig
from stream.kafka.options import ClientOptions
from stream.simulate import SimulationConfig

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"

    def __post_init__(self) -> None:
        if self.level.upper() not in LOG_LEVELS:
            raise ConfigError(
                f"logging.level must be one of {', '.join(LOG_LEVELS)}, got {self.level!r}"
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
        check_bootstrap(self.bootstrap_servers)

    def client_options(self) -> ClientOptions:
        return ClientOptions(self.bootstrap_servers, self.profile, self.options)


def check_bootstrap(servers: str) -> None:
    """`host:port[,host:port]`, each port in 1..65535 (an IPv6 host in brackets)."""
    for item in servers.split(","):
        host, sep, port = item.strip().rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        valid = bool(sep and host) and port.isdigit() and 0 < int(port) < 65_536
        if not valid or any(c.isspace() or c in "/@" for c in host):
            raise ConfigError(
                f"kafka.bootstrap_servers must be host:port[,host:port], got {servers!r} "
                f"({item.strip()!r} is not host:port)"
            )


@dataclass(frozen=True)
class TopicSettings:
    impressions: str = "impressions"
    clicks: str = "clicks"
    labeled: str = "labeled"
    corrections: str = "labeled.corrections"
    dead_letter: str = "fmstream.dead-letter"
    snapshots: str = "fmstream.snapshots"
    join_changelog: str = "fmstream.joiner-changelog"
    partitions: int = 4

    @classmethod
    def tagged(cls, tag: str, partitions: int) -> TopicSettings:
        """Every topic name suffixed with `-tag`: a private set on a shared broker."""
        names = {f.name: f"{f.default}-{tag}" for f in fields(cls) if f.name != "partitions"}
        return cls(**names, partitions=partitions)

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ConfigError(f"topics.partitions must be >= 1, got {self.partitions}")

    def all(self) -> dict[str, int]:
        """Every topic with its partition count."""
        return {
            getattr(self, f.name): self.partitions for f in fields(self) if f.name != "partitions"
        }


@dataclass(frozen=True)
class JoinDaemonSettings:
    """`[join]`, the daemon's part (`fmstream join`): its group, state and limits. The
    window's keys in the same table are `stream.join.core.JoinConfig`'s."""

    group_id: str = "fmstream-joiner"
    state_dir: Path = Path("runs/joiner-state")
    idle_timeout_s: float = 30.0
    metrics_port: int = 9400
    max_poll_records: int = 500
    max_record_bytes: int = 64 * 1024
    max_skew_hours: float = 24.0
    labeled_batch_max: int = 2_000
    labeled_batch_bytes: int = 1024 * 1024
    # A checkpoint of a partition's state after this many changelog records, or this
    # long without one: recovery reads at most the newest checkpoint and what follows.
    state_checkpoint_interval: int = 100
    state_checkpoint_interval_s: float = 600.0

    def task_config(self, join: JoinConfig) -> TaskConfig:
        """What each join task of the daemon runs with."""
        skew_ms = int(self.max_skew_hours * 3_600_000)
        return TaskConfig(
            join, self.max_record_bytes, skew_ms, self.labeled_batch_max, self.labeled_batch_bytes
        )

    def __post_init__(self) -> None:
        if self.state_checkpoint_interval < 1 or self.state_checkpoint_interval_s <= 0:
            raise ConfigError(
                "join.state_checkpoint_interval must be >= 1 and "
                "join.state_checkpoint_interval_s > 0, got "
                f"{self.state_checkpoint_interval} and {self.state_checkpoint_interval_s}"
            )
        if self.labeled_batch_max < 1 or self.labeled_batch_bytes < 1:
            raise ConfigError(
                "join.labeled_batch_max and join.labeled_batch_bytes must be >= 1, got "
                f"{self.labeled_batch_max} and {self.labeled_batch_bytes}"
            )
        if self.idle_timeout_s <= 0 or self.max_poll_records < 1 or self.max_record_bytes < 1:
            raise ConfigError(
                "join.idle_timeout_s, join.max_poll_records and join.max_record_bytes "
                f"must be > 0, got {self.idle_timeout_s}, {self.max_poll_records}, "
                f"{self.max_record_bytes}"
            )
        if not 0 <= self.metrics_port < 65536 or self.max_skew_hours <= 0:
            raise ConfigError(
                f"join.metrics_port must be 0-65535 (0: none) and join.max_skew_hours > 0, "
                f"got {self.metrics_port} and {self.max_skew_hours}"
            )


@dataclass(frozen=True)
class ReplaySettings:
    """`[replay]`: how `fmstream replay` reads a log and cuts it into periods."""

    format: str = "auto"
    label: str = ""
    time: str = ""
    time_format: str = "s"
    categorical: str = ""
    numeric: str = ""
    multi: str = ""
    delimiter: str = ","
    period: str = "1d"
    periods: int = 0
    click_delay_ms: int = 60_000
    max_rows: int = 0
    sample: float = 1.0
    max_bad_share: float = 0.01
    sort: bool = False
    out: Path = Path("runs/replay")
    truth: Path | None = None
    models: str = ",".join(PAPER_NAMES)
    store: str = "rocksdb"

    def __post_init__(self) -> None:
        if self.format not in REPLAY_FORMATS:
            raise ConfigError(f"replay.format must be one of {REPLAY_FORMATS}, got {self.format!r}")
        if self.periods < 0 or self.max_rows < 0 or self.click_delay_ms < 0:
            raise ConfigError(
                "replay.periods, replay.max_rows and replay.click_delay_ms must be >= 0"
            )
        if not 0 < self.sample <= 1:
            raise ConfigError(f"replay.sample must be in (0, 1], got {self.sample}")
        if not 0 <= self.max_bad_share <= 1:
            raise ConfigError(f"replay.max_bad_share must be in [0, 1], got {self.max_bad_share}")
        self.period_ms()

    def period_ms(self) -> int:
        """`--period` as milliseconds: a number with a unit s, m, h or d (e.g. 1d, 6h)."""
        text = self.period.strip().lower()
        units = {"s": 1_000, "m": 60_000, "h": HOUR_MS, "d": 24 * HOUR_MS}
        try:
            value = float(text[:-1]) * units[text[-1]]
        except (KeyError, ValueError, IndexError):
            raise ConfigError(
                f"replay.period must be a duration like 1d, 6h, 30m, got {self.period!r}"
            ) from None
        if value <= 0:
            raise ConfigError(f"replay.period must be positive, got {self.period!r}")
        return int(value)

    def multi_columns(self) -> dict[str, str]:
        """`--multi COL:SEP[,COL:SEP]` as column -> separator (default separator |)."""
        out = {}
        for item in filter(None, self.multi.split(",")):
            column, _, sep = item.partition(":")
            out[column] = sep or "|"
        return out


REPLAY_FORMATS = ("auto", "jsonl", "criteo", "avazu", "csv")


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
class BenchSettings:
    repeat: int = 3
    simulate_days: int = 2
    models: str = ",".join(PAPER_NAMES)
    batches: str = "1024,4096"
    steps: int = 12
    store_rows: int = 10_000_000
    cache_rows: int = 1_000_000
    batch_unique_ids: int = 60_000
    replay_rows: int = 1_000_000
    replay_models: str = "deepfm"
    replay_small_cache_rows: int = 100_000
    quality_seeds: int = 3
    stream_events: int = 200_000
    freshness_interval_s: float = 10.0
    freshness_s: float = 60.0
    freshness_rate: int = 2_000
    serve_s: float = 10.0
    serve_swaps: int = 100
    serve_swap_interval_s: float = 10.0
    serve_train_events: int = 100_000
    recovery_history: str = "100000,1000000"


@dataclass(frozen=True)
class Settings:
    logging: LoggingSettings
    kafka: KafkaSettings
    topics: TopicSettings
    broker: BrokerSettings
    simulate: SimulationConfig
    simulate_output: SimulateOutput
    join: JoinConfig
    join_daemon: JoinDaemonSettings
    replay: ReplaySettings
    train: TrainSettings
    train_daemon: TrainDaemonSettings
    features: FeatureSettings
    serve: ServeSettings
    evaluate: EvaluateSettings
    bench: BenchSettings


# TOML table -> the dataclasses whose fields make up its keys, with the
# attribute of `Settings` each one lands in.
SECTIONS: dict[str, tuple[tuple[str, type], ...]] = {
    "logging": (("logging", LoggingSettings),),
    "kafka": (("kafka", KafkaSettings),),
    "topics": (("topics", TopicSettings),),
    "broker": (("broker", BrokerSettings),),
    "simulate": (("simulate", SimulationConfig), ("simulate_output", SimulateOutput)),
    "join": (("join", JoinConfig), ("join_daemon", JoinDaemonSettings)),
    "replay": (("replay", ReplaySettings),),
    "train": (("train", TrainSettings), ("train_daemon", TrainDaemonSettings)),
    "features": (("features", FeatureSettings),),
    "serve": (("serve", ServeSettings),),
    "evaluate": (("evaluate", EvaluateSettings),),
    "bench": (("bench", BenchSettings),),
}
