"""`fmstream` commands run in the test process: the entry point the console script
calls, with its output captured and the logging it configures put back after.

For tests of what a command prints and returns; a test of what a process does
(signals, kill -9, exit on a hang) runs the real console script instead.
"""

from __future__ import annotations

import io
import logging
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass

from deploy.cli import main


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def run_fmstream(*argv: str) -> Ran:
    out, err = io.StringIO(), io.StringIO()
    loggers = [logging.getLogger(), logging.getLogger("kafka")]
    saved = [(lg.handlers[:], lg.level) for lg in loggers]
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(list(argv))
            except SystemExit as exc:  # argparse: --help, a bad flag
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        for lg, (handlers, level) in zip(loggers, saved, strict=True):
            lg.handlers[:] = handlers
            lg.setLevel(level)
    return Ran(code, out.getvalue(), err.getvalue())
