"""Logging: one line per event, `<UTC time> <LEVEL> <logger> <event> key=value ...`."""

from __future__ import annotations

import logging
import sys
import time


class _UtcFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_UtcFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # kafka-python logs every reconnect attempt at INFO/WARNING; keep our lines readable.
    logging.getLogger("kafka").setLevel(max(logging.WARNING, root.level))
    # Its event loop warns whenever one send takes over 100 ms, which large produce
    # batches on a busy machine always do; it says nothing an operator can act on.
    logging.getLogger("kafka.net.selector").setLevel(max(logging.ERROR, root.level))
