"""Bulk writes as SST files: built in key order and ingested into a database at once."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rocksdict import IngestExternalFileOptions, Options, Rdict, SstFileWriter


def ingest_sorted(
    db: Rdict, options: Options, puts: Sequence[tuple[bytes, bytes]], scratch: Path
) -> None:
    """Writes `puts` (keys strictly increasing) to an SST file at `scratch` and moves it
    into `db`: one atomic write whose keys are newer than every key already there."""
    try:
        writer = SstFileWriter(options)
        writer.open(str(scratch))
        for key, value in puts:
            writer[key] = value
        writer.finish()
        ingest = IngestExternalFileOptions()
        ingest.set_move_files(True)
        db.ingest_external_file([str(scratch)], ingest)
    finally:
        scratch.unlink(missing_ok=True)
