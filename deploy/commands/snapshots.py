"""`fmstream snapshots`: list, show, verify, promote or roll back a model's snapshots."""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime

from deploy.apps.train.clients import open_announcer
from deploy.apps.train.publish import Gate, Publisher, verify
from deploy.commands.common import KAFKA
from deploy.runtime.errors import ConfigError
from deploy.settings.resolve import Option
from deploy.settings.tables import Settings

NAME = "snapshots"
HELP = "list, show, verify, promote or roll back a model's published snapshots"
OPTIONS: list[Option] = [
    *KAFKA,
    Option("train.model", "--model", "the model whose snapshots these are"),
    Option("train.store_dir", "--store-dir", "the trainer's store (snapshots default under it)"),
    Option("train.snapshot_dir", "--snapshot-dir", "where the trainer publishes"),
]
ACTIONS = ("list", "show", "verify", "promote", "rollback")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=ACTIONS, help="what to do")
    parser.add_argument(
        "version", nargs="?", type=int, help="the snapshot (show, verify, promote; rollback: to it)"
    )


def run(settings: Settings, args: argparse.Namespace) -> int:
    train, cfg = settings.train, settings.train_daemon
    root = cfg.snapshot_dir or (train.store_dir / "snapshots" if train.store_dir else None)
    if root is None:
        raise ConfigError("say where the snapshots are: --snapshot-dir or --store-dir")
    publisher = Publisher(root, cfg.model, Gate(), time.time)
    if args.action == "list":
        _list(publisher)
        return 0
    if args.action in ("show", "verify", "promote") and args.version is None:
        raise ConfigError(f"fmstream snapshots {args.action} needs a version")
    if args.action == "show":
        manifest = publisher.manifest(args.version)
        if manifest is None:
            raise ConfigError(f"no readable snapshot {args.version} under {publisher.dir}")
        print(json.dumps(manifest, indent=1, sort_keys=True))
        return 0
    if args.action == "verify":
        verify(publisher.path(args.version))
        print(f"snapshot {args.version} of {cfg.model}: every file matches its checksum")
        return 0
    producer, announce = open_announcer(settings.kafka.client_options(), settings.topics.snapshots)
    try:
        moving = Publisher(root, cfg.model, Gate(), time.time, announce)
        if args.action == "promote":
            moving.promote(args.version)
            target = args.version
        else:
            target = moving.rollback(args.version)
    finally:
        producer.close()
    print(f"LATEST of {cfg.model} is now {target} (announced on {settings.topics.snapshots})")
    return 0


def _list(publisher: Publisher) -> None:
    latest = publisher.latest()
    print(f"{'version':>8}  {'created (UTC)':19}  {'trigger':8}  {'examples':>10}  verdict")
    for version in publisher.versions():
        m = publisher.manifest(version)
        if m is None:
            print(f"{version:>8}  (no readable manifest)")
            continue
        created = datetime.fromtimestamp(m["created_s"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        gate = m["gate"]
        verdict = "promoted" if gate["promoted"] else "refused: " + "; ".join(gate["reasons"])
        mark = "  <- LATEST" if version == latest else ""
        trigger = m.get("trigger", "")
        print(f"{version:>8}  {created}  {trigger:8}  {m['examples_seen']:>10}  {verdict}{mark}")
