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
    # kafka-python logs every reconnect attempt, and warns whenever one send takes over
    # 100 ms; fmstream reports broker trouble itself (one line, naming the servers), so
    # below DEBUG only the client's fatal lines are shown.
    kafka_level = logging.DEBUG if root.level <= logging.DEBUG else logging.CRITICAL
    logging.getLogger("kafka").setLevel(kafka_level)
    # httpx logs every request at INFO; the bench and tests send thousands.
    logging.getLogger("httpx").setLevel(max(root.level, logging.WARNING))
