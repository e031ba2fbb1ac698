"""The operations assets in deploy/ops say what the code does: the reference
configuration is the defaults, the alerts name real metrics, the unit starts."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry, generate_latest

from deploy.apps.join.metrics import JoinMetrics
from deploy.cli import COMMON, build_parser
from deploy.commands import join
from deploy.settings.resolve import FIELDS, resolve, unknown_environment

OPS = Path(__file__).resolve().parents[2] / "deploy" / "ops"


def test_the_reference_configuration_is_every_key_at_its_default() -> None:
    path = OPS / "fmstream.toml"
    listed = {
        f"{table}.{key}" for table, keys in tomllib.loads(path.read_text()).items() for key in keys
    }
    assert listed == set(FIELDS) - {"kafka.options"}
    args = build_parser().parse_args(["join"])
    heard: list[str] = []
    options = [*COMMON, *join.OPTIONS]
    from_file = resolve(args, options, {}, path, warn=heard.append)
    assert from_file == resolve(args, options, {}, None)
    assert heard == []


def test_the_alerts_name_metrics_the_joiner_exports() -> None:
    doc = yaml.safe_load((OPS / "prometheus" / "fmstream-join.rules.yml").read_text())
    rules = [r for group in doc["groups"] for r in group["rules"]]
    assert rules and all({"alert", "expr", "labels", "annotations"} <= set(r) for r in rules)
    named = {m for r in rules for m in re.findall(r"fmstream_\w+", r["expr"])}
    exported = generate_latest(JoinMetrics(CollectorRegistry()).registry).decode()
    assert named and {m for m in named if m not in exported} == set()


def test_the_systemd_unit_starts_a_joiner_with_known_settings() -> None:
    unit = (OPS / "systemd" / "fmstream-join@.service").read_text()
    start = re.search(r"^ExecStart=(.+)$", unit, re.MULTILINE)
    assert start is not None
    argv = shlex.split(start.group(1).replace("%i", "1"))
    assert Path(argv[0]).name == "fmstream"
    args = build_parser().parse_args(argv[1:])
    assert args.command is join
    env = dict(re.findall(r"^Environment=(\w+)=(.*)$", unit, re.MULTILINE))
    assert env and unknown_environment(env) == []
