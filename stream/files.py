"""JSONL record files: one file per logical topic, one record value per line."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Protocol

from stream.errors import StreamError


class FileRecord(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def value(self) -> bytes: ...


class JsonlRecordSink:
    """Writes `<dir>/<topic>.jsonl` in delivery order; values must not contain newlines."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StreamError(f"cannot create output directory {directory}: {exc}") from exc
        self._files: dict[str, IO[bytes]] = {}
        self.sent = 0

    def write(self, record: FileRecord) -> None:
        out = self._files.get(record.topic)
        if out is None:
            path = self.directory / f"{record.topic}.jsonl"
            try:
                out = self._files[record.topic] = path.open("wb", buffering=1 << 20)
            except OSError as exc:
                raise StreamError(f"cannot open {path} for writing: {exc}") from exc
        try:
            out.write(record.value)
            out.write(b"\n")
        except OSError as exc:
            raise StreamError(f"writing {out.name} failed: {exc}") from exc
        self.sent += 1

    def close(self) -> None:
        for out in self._files.values():
            out.close()
