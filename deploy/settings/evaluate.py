"""`[evaluate]`: the next-day holdout and served-performance evaluator (`fmstream evaluate`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploy.runtime.errors import ConfigError


@dataclass(frozen=True)
class EvaluateSettings:
    """Whose snapshots are judged, on which events, and where the results go."""

    snapshot_dir: Path = Path("runs/train/snapshots")
    models: str = "deepfm"
    out: Path = Path("runs/evaluation")
    truth: Path | None = None  # a simulator truth file: the Bayes-optimal row
    log: Path | None = None  # --once from a log (a `simulate --out` directory) not the topic
    day: str = ""  # --once: the day judged (2026-01-02 or a day number)
    once: bool = False
    cache_rows: int = 200_000
    state: Path | None = None  # default: <out>/.state/evaluator.npz
    metrics_port: int = 0
    poll_s: float = 2.0
    max_wait_s: float = 600.0  # a trainer that long without progress is not waited for

    def __post_init__(self) -> None:
        if not self.model_names():
            raise ConfigError(f"evaluate.models names no model: {self.models!r}")
        if self.cache_rows < 1 or self.poll_s <= 0 or self.max_wait_s < 0:
            raise ConfigError(
                "evaluate.cache_rows must be >= 1, evaluate.poll_s > 0 and evaluate.max_wait_s "
                f">= 0, got {self.cache_rows}, {self.poll_s} and {self.max_wait_s}"
            )

    def state_path(self) -> Path:
        return self.state or self.out / ".state" / "evaluator.npz"

    def model_names(self) -> list[str]:
        return [m.strip() for m in self.models.split(",") if m.strip()]
