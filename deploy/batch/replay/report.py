"""The replay's results: per-period and overall tables, the paper's Table 2 layout,
and the JSON, Markdown and PNG reports."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deploy.batch.replay.inputs import ROW_STEP_MS, START_MS
from deploy.batch.replay.protocol import PeriodReplay
from deploy.runtime.files import replace_text
from model.ctr_metrics import Scores
from model.zoo import PAPER_NAMES


def _period_label(start_ms: int, rows_per_period: int | None) -> str:
    """A period's start: its UTC time, or for a log without time its rows (the clock of
    such a log is invented, START_MS + row * ROW_STEP_MS)."""
    if rows_per_period:
        first = (start_ms - START_MS) // ROW_STEP_MS
        return f"rows {first:,}-{first + rows_per_period - 1:,}"
    return datetime.fromtimestamp(start_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M") + " UTC"


def _metrics(scores: Scores) -> dict[str, Any]:
    """Metrics as data; beyond the exact limit the AUC is the streaming estimate, with
    the largest error it can have."""
    out = asdict(scores.metrics())
    if not scores.exact:
        out["auc_bound"] = scores.streaming.auc_bound
    return out


def build(
    replay: PeriodReplay, meta: dict[str, Any], done: dict[int, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Everything the report files hold, as plain data. With `done` (a report written
    while the replay runs): the rows of finished periods are taken from it and kept in
    it, so each is computed once, and the overall rows are left for the final report."""
    periods = []
    for p, info in sorted(replay.periods.items()):
        if done is not None and p in done:
            periods.append(done[p])
            continue
        row = _period_row(replay, p, info.start_ms, meta.get("rows_per_period"))
        row.update(events=info.events, snapshot_newest_ms=info.snapshot_newest_ms)
        if done is not None:
            done[p] = row
        periods.append(row)
    overall = {} if done is not None else _overall(replay)
    return {
        **meta,
        "events": replay.events,
        "events_after_their_period": replay.out_of_order,
        "periods": periods,
        "overall": overall,
    }


def _period_row(
    replay: PeriodReplay, p: int, start_ms: int, rows_per_period: int | None
) -> dict[str, Any]:
    models = {}
    for t in replay.tracks:
        entry: dict[str, Any] = {}
        if p in t.holdout:
            entry["holdout"] = _metrics(t.holdout[p])
        if p in t.pretraining:
            entry["pretraining"] = True
        if p in t.progressive:
            entry["progressive"] = _metrics(t.progressive[p])
        models[t.config.paper_name] = entry
    row: dict[str, Any] = {
        "period": p,
        "start": _period_label(start_ms, rows_per_period),
        "start_ms": start_ms,
        "models": models,
    }
    if p in replay.bayes:
        row["bayes"] = _metrics(replay.bayes[p])
    return row


def _overall(replay: PeriodReplay) -> dict[str, Any]:
    overall: dict[str, Any] = {}
    for t in replay.tracks:
        if t.holdout:
            overall[t.config.paper_name] = {
                "holdout": _metrics(Scores.merged(list(t.holdout.values()))),
                "progressive": (
                    _metrics(Scores.merged(list(t.progressive.values()))) if t.progressive else None
                ),
                "trained": t.trained,
                "train_events_per_s": round(t.trained / t.seconds) if t.seconds else None,
                "store_evicted": {"ttl": t.evicted_ttl, "max_rows": t.evicted_max_rows},
                "store_rows_after_eviction": t.stored_rows,
            }
    evaluated = [p for p in replay.periods if any(p in t.holdout for t in replay.tracks)]
    if replay.bayes and evaluated:
        bayes = Scores.merged([replay.bayes[p] for p in evaluated if p in replay.bayes])
        overall["Bayes-optimal"] = {"holdout": _metrics(bayes)}
    return overall


_HEAD = f"{'model':<14} {'auc':>7} {'logloss':>8} {'NE':>6} {'calib':>6} {'count':>8}"


def _line(name: str, m: dict[str, Any]) -> str:
    return (
        f"{name:<14} {m['auc']:>7.4f} {m['logloss']:>8.5f} {m['normalized_entropy']:>6.3f} "
        f"{m['calibration']:>6.3f} {m['count']:>8}"
    )


def _ranked(models: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    rows = [(name, e["holdout"]) for name, e in models.items() if "holdout" in e]
    return sorted(rows, key=lambda r: -_num(r[1]["auc"]))


def _num(x: float) -> float:
    return -1.0 if math.isnan(x) else x


def period_table(period: dict[str, Any]) -> list[str]:
    """One period's holdout table (empty when no model was held out on it)."""
    ranked = _ranked(period["models"])
    if not ranked:
        return []
    out = [
        f"period {period['period']} ({period['start']}): holdout of the snapshot "
        f"taken before it ({period['events']} events)",
        _HEAD,
    ]
    if "bayes" in period:
        out.append(_line("Bayes-optimal", period["bayes"]))
    return [*out, *(_line(name, m) for name, m in ranked), ""]


def tables(doc: dict[str, Any], shown: int = 0) -> str:
    """Every period's table after the first `shown` (printed as they completed), then
    the overall one."""
    out = [line for period in doc["periods"][shown:] for line in period_table(period)]
    overall = {k: v for k, v in doc["overall"].items() if k != "Bayes-optimal"}
    if overall:
        out.append("overall: every holdout period together")
        out.append(_HEAD)
        if "Bayes-optimal" in doc["overall"]:
            out.append(_line("Bayes-optimal", doc["overall"]["Bayes-optimal"]["holdout"]))
        out += [_line(name, m) for name, m in _ranked(overall)]
    else:
        hint = "--periods N" if doc.get("rows_per_period") else "a shorter --period, or --periods N"
        out.append(f"no holdout: the log spans a single period (use {hint})")
    return "\n".join(out)


def join_summary(doc: dict[str, Any]) -> list[str]:
    """The join's counters in one line, then a warning for each that is implausible
    for a log in time order (a sign of disorder or of wrong column options)."""
    events, after = doc["events"], doc["events_after_their_period"]
    join = doc.get("join")
    lines = []
    if join is not None:
        lines.append(
            f"joined: {join['labels_positive'] + join['labels_negative']} labels "
            f"({join['labels_positive']} clicked), late clicks {join['late_clicks']}, "
            f"orphan clicks {join['orphan_clicks']}, duplicate impressions "
            f"{join['duplicate_impressions']}, duplicate clicks {join['duplicate_clicks']}; "
            f"events after their period {after}"
        )
        clicks = max(1, join["clicks"])
        if join["orphan_clicks"] > 0.05 * clicks:
            lines.append(
                f"warning: {join['orphan_clicks']} of {join['clicks']} clicks found no "
                "impression: is the log in time order, is the click delay right?"
            )
        if join["late_clicks"] > 0.2 * clicks:
            lines.append(
                f"warning: {join['late_clicks']} of {join['clicks']} clicks came after their "
                "window and count as label 0"
            )
    else:
        lines.append(f"events after their period: {after}")
    if after > 0.01 * max(1, events):
        lines.append(
            f"warning: {after} of {events} events were logged after their period ended "
            "and were scored with a later one"
        )
    return lines


def paper_table(doc: dict[str, Any]) -> str:
    """Table 2's layout on the last holdout period: AUC and LogLoss per model, with
    DeepFM's relative improvement over each."""
    last = next((p for p in reversed(doc["periods"]) if _ranked(p["models"])), None)
    if last is None:
        return "no holdout period to tabulate"
    models = dict(_ranked(last["models"]))
    order = [PAPER_NAMES[k] for k in PAPER_NAMES if PAPER_NAMES[k] in models]
    deep = models.get("DeepFM")
    lines = [
        f"Table 2 layout: holdout period {last['period']} ({last['start']} UTC, "
        f"{last['events']} events)",
        f"{'Model':<14} {'AUC':>7} {'LogLoss':>8} {'DeepFM AUC gain':>16} {'LogLoss gain':>13}",
    ]
    pretraining = [n for n in order if last["models"][n].get("pretraining")]
    for name in order:
        m = models[name]
        gain = ll_gain = ""
        if deep is not None and name != "DeepFM":
            gain = f"{(deep['auc'] - m['auc']) / m['auc'] * 100:+.2f}%"
            ll_gain = f"{(m['logloss'] - deep['logloss']) / m['logloss'] * 100:+.2f}%"
        shown = f"{name}*" if name in pretraining else name
        lines.append(f"{shown:<14} {m['auc']:>7.4f} {m['logloss']:>8.5f} {gain:>16} {ll_gain:>13}")
    if "bayes" in last:
        b = last["bayes"]
        lines.append(f"{'Bayes-optimal':<14} {b['auc']:>7.4f} {b['logloss']:>8.5f}")
    if pretraining:
        lines.append(
            f"* still in its FM pre-training in this period (it scored as an FM): "
            f"{', '.join(pretraining)}"
        )
    return "\n".join(lines)


def markdown(doc: dict[str, Any]) -> str:
    out = [f"# Replay of `{doc['input']}`", ""]
    out.append(
        f"{doc['events']} labeled events, {len(doc['periods'])} periods, "
        f"{doc['bad_rows']['count']} unreadable rows."
    )
    out += ["", *(f"- {line}" for line in join_summary(doc))]
    schema = doc.get("schema")
    if schema:
        out += ["", f"Features (first {schema['events']} events):", ""]
        out += ["| field | kind | distinct values |", "|---|---|---|"]
        out += [f"| {f['field']} | {f['kind']} | {f['distinct']} |" for f in schema["fields"]]
        out += ["", *(f"- {w}" for w in schema["warnings"])]
    for period in doc["periods"]:
        ranked = _ranked(period["models"])
        if not ranked:
            continue
        out += [
            "",
            f"## Period {period['period']} ({period['start']}, {period['events']} events)",
            "",
        ]
        out += ["| model | AUC | logloss | NE | calibration | count |", "|---|---|---|---|---|---|"]
        rows = ([("Bayes-optimal", period["bayes"])] if "bayes" in period else []) + ranked
        out += [
            f"| {n} | {m['auc']:.4f} | {m['logloss']:.5f} | {m['normalized_entropy']:.3f} "
            f"| {m['calibration']:.3f} | {m['count']} |"
            for n, m in rows
        ]
    return "\n".join(out) + "\n"


def write_files(doc: dict[str, Any], out: Path, with_plot: bool = True) -> list[Path]:
    """replay.json and replay.md (each replaced whole, by rename), and the plot."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "replay.json", out / "replay.md", out / "replay.png"]
    # default=str: every setting serializes (paths, enums), whatever the settings hold.
    replace_text(paths[0], json.dumps(doc, indent=2, allow_nan=True, default=str) + "\n")
    replace_text(paths[1], markdown(doc))
    if not with_plot:
        return paths[:2]
    plot(doc, paths[2])
    return paths


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_auc, ax_ll) = plt.subplots(1, 2, figsize=(11, 4))
    names = sorted({n for p in doc["periods"] for n, e in p["models"].items() if "holdout" in e})
    for name in names:
        points = [
            (p["period"], p["models"][name]["holdout"])
            for p in doc["periods"]
            if "holdout" in p["models"].get(name, {})
        ]
        xs = [x for x, _ in points]
        ax_auc.plot(xs, [m["auc"] for _, m in points], marker="o", label=name)
        ax_ll.plot(xs, [m["logloss"] for _, m in points], marker="o", label=name)
    for ax, title in ((ax_auc, "holdout AUC"), (ax_ll, "holdout logloss")):
        ax.set_xlabel("period")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    if names:
        ax_auc.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
