"""`fmstream serve`: HTTP scoring workers that follow a model's promoted snapshots."""

from __future__ import annotations

import argparse

from deploy.apps.serve.requests import Limits
from deploy.apps.serve.worker import WorkerConfig, run_workers
from deploy.commands.common import KAFKA
from deploy.runtime.errors import ConfigError
from deploy.settings.resolve import Option
from deploy.settings.tables import Settings

NAME = "serve"
HELP = "score candidates over HTTP with the newest promoted snapshot of a model (workers)"
_FLAGS = {
    "snapshot_dir": (
        "--snapshots",
        "the trainer's snapshot directory (a subdirectory per model)",
    ),
    "model": ("--model", "the model whose snapshots are served"),
    "workers": ("--workers", "worker processes on the one port (each one torch thread)"),
    "host": ("--host", "address to bind (127.0.0.1 unless the scorers must be reached)"),
    "port": ("--port", "port to bind"),
    "poll_s": ("--poll-s", "seconds between checks of LATEST (announcements wake them sooner)"),
    "poll_only": ("--poll-only", "do not follow the snapshots topic: poll LATEST alone"),
    "cache_rows": ("--cache-rows", "embedding rows each worker keeps in its read cache"),
    "max_body_bytes": ("--max-body-bytes", "larger bodies answer 413"),
    "max_candidates": ("--max-candidates", "more candidates answer 413"),
    "max_fields": ("--max-fields", "more fields in one candidate (with the context) answer 422"),
    "max_value_bytes": ("--max-value-bytes", "a longer value answers 422"),
    "unknown_fields": (
        "--unknown-fields",
        "a field the snapshot's schema lacks: 'reject' (422) or 'ignore'",
    ),
    "token_file": ("--token-file", "a file holding the bearer token /v1/score requires"),
    "warm_requests": ("--warm-requests", "recent requests scored on a snapshot before its swap"),
    "shutdown_timeout_s": (
        "--shutdown-timeout-s",
        "on SIGTERM, seconds in-flight requests get to finish",
    ),
}
OPTIONS: list[Option] = [
    *KAFKA,
    *(Option(f"serve.{key}", flag, text) for key, (flag, text) in _FLAGS.items()),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # every flag is a setting


def run(settings: Settings, args: argparse.Namespace) -> int:
    del args
    serve = settings.serve
    model_dir = serve.snapshot_dir / serve.model
    if not serve.snapshot_dir.is_dir():
        raise ConfigError(f"no snapshot directory at {serve.snapshot_dir} (--snapshots)")
    token = None
    if serve.token_file is not None:
        try:
            token = serve.token_file.read_text().strip().encode()
        except OSError as exc:
            raise ConfigError(f"cannot read the token file {serve.token_file}: {exc}") from exc
        if not token:
            raise ConfigError(f"the token file {serve.token_file} is empty")
    limits = Limits(
        serve.max_body_bytes,
        serve.max_candidates,
        serve.max_fields,
        serve.max_value_bytes,
        reject_unknown=serve.unknown_fields == "reject",
    )
    config = WorkerConfig(
        model_dir,
        serve.model,
        serve.cache_rows,
        limits,
        serve.poll_s,
        serve.warm_requests,
        token,
        None if serve.poll_only else settings.kafka.client_options(),
        settings.topics.snapshots,
        settings.logging.level,
    )
    run_workers(config, serve.host, serve.port, serve.workers, serve.shutdown_timeout_s)
    return 0
