"""`[serve]`: the scoring workers (`fmstream serve`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploy.runtime.errors import ConfigError

UNKNOWN_FIELDS = ("reject", "ignore")


@dataclass(frozen=True)
class ServeSettings:
    """Where the snapshots are, how many workers answer on which address, and the
    limits every request is held to."""

    snapshot_dir: Path = Path("runs/train/snapshots")
    model: str = "deepfm"
    workers: int = 1
    host: str = "127.0.0.1"
    port: int = 8500
    poll_s: float = 5.0
    poll_only: bool = False  # no consumer of the snapshots topic: LATEST polls alone
    cache_rows: int = 200_000
    max_body_bytes: int = 1 << 20
    max_candidates: int = 1_000
    max_fields: int = 200
    max_value_bytes: int = 1_024
    unknown_fields: str = "reject"
    token_file: Path | None = None
    warm_requests: int = 3
    shutdown_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.workers < 1 or not 0 < self.port < 65536:
            raise ConfigError(
                f"serve.workers must be >= 1 and serve.port 1-65535, got {self.workers} and "
                f"{self.port}"
            )
        if self.poll_s <= 0 or self.cache_rows < 1 or self.shutdown_timeout_s <= 0:
            raise ConfigError(
                "serve.poll_s, serve.cache_rows and serve.shutdown_timeout_s must be > 0, got "
                f"{self.poll_s}, {self.cache_rows} and {self.shutdown_timeout_s}"
            )
        limits = (self.max_body_bytes, self.max_candidates, self.max_fields, self.max_value_bytes)
        if min(limits) < 1 or self.warm_requests < 0:
            raise ConfigError(
                "serve.max_body_bytes, serve.max_candidates, serve.max_fields and "
                f"serve.max_value_bytes must be >= 1 (got {limits}), serve.warm_requests >= 0"
            )
        if self.unknown_fields not in UNKNOWN_FIELDS:
            raise ConfigError(
                f"serve.unknown_fields must be one of {UNKNOWN_FIELDS}, got {self.unknown_fields!r}"
            )
