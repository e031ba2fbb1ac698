"""The `fmstream` command line: one entry point, one module per subcommand."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from deploy.commands import (
    bench,
    broker,
    demo,
    evaluate,
    join,
    replay,
    serve,
    simulate,
    snapshots,
    train,
)
from deploy.runtime.errors import ConfigError, DeployError
from deploy.runtime.logging_setup import configure_logging
from deploy.settings.resolve import CONFIG_ENV, Option, add_options, resolve, unknown_environment
from model.errors import ModelError
from store.errors import StoreError
from stream.errors import StreamError

COMMANDS: tuple[ModuleType, ...] = (
    demo,
    broker,
    simulate,
    join,
    replay,
    train,
    snapshots,
    serve,
    evaluate,
    bench,
)
COMMON: list[Option] = [Option("logging.level", "--log-level", "DEBUG, INFO, WARNING or ERROR")]
log = logging.getLogger("deploy.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fmstream",
        description="Streaming online learning for click-through-rate prediction.",
        epilog="Configuration: --config FILE (TOML) < FMSTREAM_* environment < flags.",
    )
    sub = parser.add_subparsers(dest="command_name", required=True, metavar="COMMAND")
    for command in COMMANDS:
        p = sub.add_parser(command.NAME, help=command.HELP, description=command.HELP)
        p.add_argument(
            "--config", type=Path, default=None, help=f"TOML configuration file [env {CONFIG_ENV}]"
        )
        add_options(p, [*COMMON, *command.OPTIONS])
        command.add_arguments(p)
        p.set_defaults(command=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command: ModuleType = args.command
    config_path = args.config or (
        Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None
    )
    try:
        settings = resolve(
            args, [*COMMON, *command.OPTIONS], os.environ, config_path, warn=_warning
        )
    except ConfigError as exc:
        print(f"fmstream {command.NAME}: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.logging.level)
    for name in unknown_environment(os.environ):
        _warning(f"{name} names no setting and is ignored")
    try:
        code: int = command.run(settings, args)
    except (DeployError, StreamError, StoreError, ModelError) as exc:
        # The package's own errors say what to do in one line; the trace is for DEBUG.
        log.debug("command_failed command=%s", command.NAME, exc_info=True)
        print(f"fmstream {command.NAME}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


def _warning(message: str) -> None:
    print(f"fmstream: warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
