"""`[train]`: the models, their optimizers and their embedding store, shared by
`replay` and `demo` (and the trainer daemon to come)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploy.runtime.errors import ConfigError
from model.errors import ModelError
from model.trainer import TrainerConfig, resolve_device
from model.zoo import ModelConfig, canonical_name

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class EvictionPolicy:
    """Store eviction on an event-time schedule: every `every_ms`, rows unseen for
    `ttl_ms`, then the least frequent beyond `max_rows` (None: that rule is off)."""

    every_ms: int
    ttl_ms: int | None
    max_rows: int | None

    def expire_before(self, now: int) -> int | None:
        """Rows last seen before this event time are stale at `now`."""
        return now - self.ttl_ms if self.ttl_ms else None


@dataclass(frozen=True)
class TrainSettings:
    """`[train]`: which models learn and how (model hyper-parameters are section 3.3's)."""

    models: str = "lr,fm,deepfm"
    batch_size: int = 1024
    device: str = "auto"
    seed: int = 0
    k: int = 10
    hidden_layers: int = 3
    neurons: int = 400
    shape: str = "constant"
    dropout_keep: float = 0.5
    dense_lr: float = 1e-3
    sparse_optimizer: str = ""
    sparse_lr: float = 0.0
    sparse_l2: float = 0.0
    sparse_initial_accumulator: float = 0.1
    max_logit_step: float = 0.2
    store: str = "memory"
    store_dir: Path | None = None
    cache_rows: int = 1_000_000
    admit_after: int = 1
    admit_after_fields: str = ""
    sketch_width: int = 1 << 22
    store_ttl_hours: float = 0.0
    store_max_rows: int = 0
    evict_every_hours: float = 24.0

    def __post_init__(self) -> None:
        if self.store_ttl_hours < 0 or self.store_max_rows < 0 or self.evict_every_hours <= 0:
            raise ConfigError(
                "train.store_ttl_hours and train.store_max_rows must be >= 0 (0: off) and "
                f"train.evict_every_hours > 0, got {self.store_ttl_hours}, "
                f"{self.store_max_rows} and {self.evict_every_hours}"
            )
        if self.admit_after < 1 or self.sketch_width < 1:
            raise ConfigError(
                f"train.admit_after and train.sketch_width must be >= 1, "
                f"got {self.admit_after} and {self.sketch_width}"
            )
        if self.store not in ("memory", "rocksdb"):
            raise ConfigError(f"train.store must be memory or rocksdb, got {self.store!r}")
        if self.cache_rows < 1:
            raise ConfigError(f"train.cache_rows must be >= 1, got {self.cache_rows}")
        self._check_ranges()
        for name in self.model_names():
            try:
                canonical_name(name)
            except ValueError as exc:
                raise ConfigError(f"train.models: {exc}") from None
        self.field_thresholds()
        if self.shape not in ("constant", "increasing", "decreasing", "diamond"):
            raise ConfigError(
                "train.shape must be constant, increasing, decreasing or diamond, "
                f"got {self.shape!r}"
            )
        if self.sparse_optimizer not in ("", "adagrad", "adam", "ftrl"):
            raise ConfigError(
                "train.sparse_optimizer must be adagrad, adam or ftrl, "
                f"got {self.sparse_optimizer!r}"
            )

    def _check_ranges(self) -> None:
        at_least = {"batch_size": 1, "k": 1, "neurons": 1, "hidden_layers": 0}
        for name, low in at_least.items():
            if getattr(self, name) < low:
                raise ConfigError(f"train.{name} must be >= {low}, got {getattr(self, name)}")
        if not 0 < self.dropout_keep <= 1:
            raise ConfigError(f"train.dropout_keep must be in (0, 1], got {self.dropout_keep}")
        if not 0 < self.dense_lr <= 1:
            raise ConfigError(f"train.dense_lr must be in (0, 1], got {self.dense_lr}")
        if self.sparse_lr < 0:
            raise ConfigError(f"train.sparse_lr must be >= 0 (0: default), got {self.sparse_lr}")
        if self.sparse_l2 < 0 or self.sparse_initial_accumulator <= 0:
            raise ConfigError(
                "train.sparse_l2 must be >= 0 and train.sparse_initial_accumulator > 0, got "
                f"{self.sparse_l2} and {self.sparse_initial_accumulator}"
            )
        if self.max_logit_step < 0:
            raise ConfigError(
                f"train.max_logit_step must be >= 0 (0: unbounded), got {self.max_logit_step}"
            )
        try:
            resolve_device(self.device)
        except ModelError as exc:
            raise ConfigError(f"train.device: {exc}") from None

    def field_thresholds(self) -> dict[str, int]:
        """`admit_after_fields` = "user_id:5,item_id:3": per-field admission thresholds."""
        out: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in self.admit_after_fields.split(","))):
            name, _, count = part.partition(":")
            try:
                out[name.strip()] = int(count)
            except ValueError:
                raise ConfigError(
                    f"train.admit_after_fields: {part!r} is not FIELD:COUNT"
                ) from None
            if out[name.strip()] < 1:
                raise ConfigError(f"train.admit_after_fields: {part!r} needs a count >= 1")
        return out

    def eviction(self, stored: bool = False) -> EvictionPolicy | None:
        """When and what the store drops, in event time; None when rows live forever.
        `stored`: the rows are in RocksDB whatever `store` says (the trainer daemon)."""
        in_rocksdb = stored or self.store == "rocksdb"
        if not in_rocksdb or not (self.store_ttl_hours or self.store_max_rows):
            return None
        return EvictionPolicy(
            every_ms=int(self.evict_every_hours * HOUR_MS),
            ttl_ms=int(self.store_ttl_hours * HOUR_MS) or None,
            max_rows=self.store_max_rows or None,
        )

    def model_names(self) -> list[str]:
        return [m.strip() for m in self.models.split(",") if m.strip()]

    def model_configs(self) -> list[ModelConfig]:
        return [self.model_config(name) for name in self.model_names()]

    def model_config(self, name: str) -> ModelConfig:
        """Model `name` with this table's hyper-parameters."""
        try:
            return ModelConfig(
                name=name,
                k=self.k,
                hidden_layers=self.hidden_layers,
                neurons=self.neurons,
                shape=self.shape,  # type: ignore[arg-type]
                dropout_keep=self.dropout_keep,
            )
        except ValueError as exc:
            raise ConfigError(f"invalid [train] model settings: {exc}") from exc

    def trainer_config(self) -> TrainerConfig:
        return TrainerConfig(
            dense_lr=self.dense_lr,
            sparse_optimizer=self.sparse_optimizer or None,
            sparse_lr=self.sparse_lr or None,
            sparse_l2=self.sparse_l2,
            sparse_initial_accumulator=self.sparse_initial_accumulator,
            max_logit_step=self.max_logit_step,
            device=self.device,
            seed=self.seed,
        )


@dataclass(frozen=True)
class TrainDaemonSettings:
    """`[train]`, the daemon's part (`fmstream train`): its model, cadence and limits."""

    model: str = "deepfm"
    max_batch_wait_ms: int = 1000
    checkpoint_interval_s: float = 10.0
    max_skew_hours: float = 24.0
    progressive_window: int = 100_000
    max_poll_records: int = 500
    metrics_port: int = 0
    snapshot_dir: Path | None = None
    publish_interval_s: float = 60.0
    gate_min_calibration: float = 0.5
    gate_max_calibration: float = 2.0
    gate_max_ne_regression: float = 0.05
    keep_snapshots: int = 10
    keep_days: int = 7

    def __post_init__(self) -> None:
        if self.max_batch_wait_ms < 1 or self.checkpoint_interval_s <= 0:
            raise ConfigError(
                "train.max_batch_wait_ms must be >= 1 and train.checkpoint_interval_s > 0, got "
                f"{self.max_batch_wait_ms} and {self.checkpoint_interval_s}"
            )
        if self.max_skew_hours <= 0 or self.progressive_window < 1 or self.max_poll_records < 1:
            raise ConfigError(
                "train.max_skew_hours must be > 0, train.progressive_window and "
                f"train.max_poll_records >= 1, got {self.max_skew_hours}, "
                f"{self.progressive_window} and {self.max_poll_records}"
            )
        if not 0 <= self.metrics_port < 65536:
            raise ConfigError(f"train.metrics_port must be 0-65535, got {self.metrics_port}")
        if self.keep_snapshots < 1 or self.keep_days < 0:
            raise ConfigError(
                "train.keep_snapshots must be >= 1 and train.keep_days >= 0, got "
                f"{self.keep_snapshots} and {self.keep_days}"
            )
        if self.publish_interval_s < 0:
            raise ConfigError(
                f"train.publish_interval_s must be >= 0 (0: day ends only), got "
                f"{self.publish_interval_s}"
            )
        if not 0 < self.gate_min_calibration <= 1 <= self.gate_max_calibration:
            raise ConfigError(
                "train.gate_min_calibration must be in (0, 1] and train.gate_max_calibration "
                f">= 1, got {self.gate_min_calibration} and {self.gate_max_calibration}"
            )
        try:
            canonical_name(self.model)
        except ValueError as exc:
            raise ConfigError(f"train.model: {exc}") from None
