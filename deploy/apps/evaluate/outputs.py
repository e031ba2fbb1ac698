"""The evaluator's files: `<out>/<model>/<date>.json` per day, and `report.md` and
`report.png` over every day written so far (each replaced whole, by rename)."""

from __future__ import annotations

import datetime as dt
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deploy.runtime.files import replace_text
from stream.events import DAY_MS

REPORT_MD, REPORT_PNG = "report.md", "report.png"
log = logging.getLogger(__name__)


def date_of(day: int) -> str:
    return datetime.fromtimestamp(day * DAY_MS / 1000, UTC).date().isoformat()


def day_number(date: str) -> int:
    """An ISO date (2026-01-02) or a day number (days since 1970-01-01, UTC)."""
    if date.lstrip("-").isdigit():
        return int(date)
    parsed = datetime.fromisoformat(date).replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000) // DAY_MS


def write_day(out: Path, model: str, day: int, row: dict[str, Any]) -> Path:
    path = out / model / f"{date_of(day)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"model": model, "day": day, "date": date_of(day), **row}
    replace_text(path, json.dumps(doc, indent=1, sort_keys=True) + "\n")
    log.info(
        "evaluated model=%s day=%s holdout_auc=%s served_auc=%s file=%s",
        model,
        date_of(day),
        row["holdout"].get("auc"),
        row["served"].get("auc"),
        path,
    )
    return path


def read_days(out: Path) -> list[dict[str, Any]]:
    """Every day's row under `out`, by date then model."""
    rows = [json.loads(p.read_text()) for p in sorted(out.glob("*/*.json"))]
    return sorted(rows, key=lambda r: (r["date"], r["model"]))


def write_report(out: Path, with_plot: bool = True) -> list[Path]:
    rows = read_days(out)
    replace_text(out / REPORT_MD, markdown(rows))
    if not with_plot:
        return [out / REPORT_MD]
    plot(rows, out / REPORT_PNG)
    return [out / REPORT_MD, out / REPORT_PNG]


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "# Next-day holdout and served performance",
        "",
        "Holdout: each day's events scored by the model's day-end snapshot of the day "
        "before, which is also what a daily batch job (one pass over the days before, "
        "from scratch) would serve all day. Served: each event scored by the snapshot "
        "scorers were serving when it was shown, so the difference is what online "
        "training gains over that job. Read the gain on NE: the served AUC pools the "
        "scores of several snapshots, and their differing calibration lowers a pooled "
        "AUC even where each snapshot ranks better than the holdout one. Bayes: the "
        "simulator's true click probabilities.",
        "",
        "| date | model | events | holdout AUC | holdout NE | served AUC | served NE | "
        "NE gain (holdout - served) | served - holdout AUC | snapshot | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    bayes: dict[str, dict[str, Any]] = {}
    for row in rows:
        hold, served = row["holdout"], row["served"]
        gain = _minus(served.get("auc"), hold.get("auc"))
        ne_gain = _minus(hold.get("normalized_entropy"), served.get("normalized_entropy"))
        snapshot = "—" if hold["snapshot"] is None else hold["snapshot"]
        note = hold.get("missing") or ("refused by the gate" if hold["promoted"] is False else "")
        lines.append(
            f"| {row['date']} | {row['model']} | {max(hold['count'], served['count'])} | "
            f"{_f(hold.get('auc'))} | {_f(hold.get('normalized_entropy'))} | "
            f"{_f(served.get('auc'))} | {_f(served.get('normalized_entropy'))} | "
            f"{_f(ne_gain)} | {_f(gain)} | {snapshot} | {note} |"
        )
        if row.get("bayes") and row["bayes"]["count"]:
            bayes[row["date"]] = row["bayes"]
    for date, b in sorted(bayes.items()):
        lines.append(
            f"| {date} | Bayes-optimal | {b['count']} | {_f(b['auc'])} | "
            f"{_f(b['normalized_entropy'])} | | | | | | |"
        )
    return "\n".join(lines) + "\n"


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _f(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _day(row: dict[str, Any]) -> dt.date:
    # A date, not its text: matplotlib would otherwise treat the days as categories,
    # ordered as first met rather than in time.
    return dt.date.fromisoformat(row["date"])


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for model in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == model]
        for kind, style in (("holdout", "-"), ("served", "--")):
            for ax, key in zip(axes, ("auc", "normalized_entropy"), strict=True):
                points = [(_day(r), r[kind].get(key)) for r in mine]
                points = [(d, v) for d, v in points if v is not None]
                if points:
                    ax.plot(*zip(*points, strict=True), style, marker="o", label=f"{model} {kind}")
    bayes = sorted(
        {
            (_day(r), r["bayes"].get("auc"), r["bayes"].get("normalized_entropy"))
            for r in rows
            if r.get("bayes") and r["bayes"]["count"]
        }
    )
    if bayes:
        axes[0].plot([b[0] for b in bayes], [b[1] for b in bayes], ":", color="k", label="Bayes")
        axes[1].plot([b[0] for b in bayes], [b[2] for b in bayes], ":", color="k", label="Bayes")
    for ax, title in zip(axes, ("AUC by day", "normalized entropy by day"), strict=True):
        ax.set_title(title)
        ax.set_xlabel("event day")
        ax.grid(alpha=0.3)
        ax.tick_params(axis="x", labelrotation=30)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
