"""`fmstream replay`: a log through the joiner core and the trainers, period by period,
each period scored by the snapshot taken before it (next-period holdout)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from deploy.batch.replay import report
from deploy.batch.replay.census import schema_lines
from deploy.batch.replay.run import grid, replay
from deploy.commands.common import TRAIN, add_store_reuse
from deploy.settings.resolve import Option
from deploy.settings.tables import Settings

NAME = "replay"
HELP = "replay a log (fmstream JSONL, Criteo, Avazu, CSV) and report next-period holdouts"
_REPLAY_HELP = {
    "format": "auto (directory: jsonl; name with criteo/avazu: that), jsonl, criteo, avazu, csv",
    "label": "csv: the label column (0/1)",
    "time": "csv: the time column (none: row order is time)",
    "time_format": "csv: s or ms since the epoch, or a strftime format (UTC)",
    "categorical": "csv: categorical columns a,b,... (if no column kind is named: every "
    "column but the label and time)",
    "numeric": "csv: numeric columns x,y,...",
    "multi": "csv: multi-valued columns COL:SEP[,COL:SEP]",
    "delimiter": "csv: the field delimiter",
    "period": "period length of a log with time: 1d, 6h, 30m, ...",
    "periods": "a log without time is cut by row order into this many periods",
    "click_delay_ms": "a label-only row's click comes this long after its impression",
    "max_rows": "read at most this many rows (0: all)",
    "sample": "keep this fraction of rows (seeded by --train-seed)",
    "max_bad_share": "stop when more than this share of the rows is unreadable",
    "sort": "sort a timed log by time first (on disk, bounded memory) instead of refusing it",
    "out": "directory of replay.json, replay.md, replay.png",
    "truth": "truth file for the Bayes-optimal row (default: LOG/truth.csv when present)",
    "models": "comma-separated models (default: the paper's nine)",
    "store": "where embedding rows live: rocksdb or memory",
}
OPTIONS: list[Option] = [
    *(
        Option(f"replay.{name}", "--" + name.replace("_", "-"), text)
        for name, text in _REPLAY_HELP.items()
    ),
    *(o for o in TRAIN if o.key not in ("train.models", "train.store")),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("log", type=Path, help="a log file, or a `simulate --out` directory")
    add_store_reuse(parser)
    parser.add_argument(
        "--paper-table",
        action="store_true",
        help="also print the paper's Table 2 layout (last holdout period)",
    )
    parser.add_argument(
        "--via-kafka",
        action="store_true",
        help="join through an embedded broker and the join daemon instead of in process",
    )
    parser.add_argument(
        "--grid",
        nargs="*",
        default=[],
        metavar="NAME=V1,V2",
        help="sweep section 3.3's hyper-parameters: dropout, hidden, layers, shape, k, lr, batch",
    )


def _show(lines: list[str]) -> None:
    if lines:
        print("\n".join(lines), flush=True)


def run(settings: Settings, args: argparse.Namespace) -> int:
    cfg = settings.replay
    train = dataclasses.replace(settings.train, models=cfg.models, store=cfg.store)
    settings_grid = grid(train, args.grid)
    for i, (label, setting) in enumerate(settings_grid):
        out = cfg.out / f"grid-{i}" if len(settings_grid) > 1 else cfg.out
        if label:
            print(f"== {label}")
        doc = replay(
            args.log,
            settings,
            setting,
            out,
            via_kafka=args.via_kafka,
            reuse=args.store_reuse,
            show=_show,
        )
        # Every period but the last was shown as it completed.
        print(report.tables(doc, shown=max(0, len(doc["periods"]) - 1)))
        if args.paper_table:
            print()
            print(report.paper_table(doc))
        if doc["store_note"]:
            print(doc["store_note"])
        print("\n".join(report.join_summary(doc)))
        print("\n".join(schema_lines(doc["schema"])))
        bad = doc["bad_rows"]
        if bad["count"]:
            print(f"unreadable rows: {bad['count']} (first: {'; '.join(bad['first'])})")
        print(f"reports: {out}/replay.json, replay.md, replay.png", flush=True)
    return 0
