"""The scoring worker's HTTP app (Starlette): score, health, readiness, model, metrics.

Scoring runs on the event loop's thread: a worker is pinned to one torch
thread and one core, and a request never waits on a thread hop. Loading and
warming the next snapshot run on the follower's thread.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from deploy.apps.serve.current import Current, NotReady
from deploy.apps.serve.metrics import ServeMetrics, exposition
from deploy.apps.serve.openapi import OPENAPI
from deploy.apps.serve.requests import Limits, RequestError, parse, too_large
from deploy.apps.serve.snapshot import Loaded
from model.errors import FeatureError

log = logging.getLogger(__name__)
Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class Scoring:
    """What the endpoints share in one worker."""

    model: str
    current: Current
    limits: Limits
    metrics: ServeMetrics
    token: bytes | None
    wall: Callable[[], float]
    recent: deque[list[dict[str, Any]]]  # a few recent requests, to warm the next snapshot

    def warm(self, loaded: Loaded, requests: int) -> None:
        """Scores a few requests on a snapshot before it is served: the last ones this
        worker answered (their rows come into the cache) and one of missing values."""
        batches: list[list[dict[str, Any]]] = [*list(self.recent)[-requests:], [{}] * 8]
        for features in batches if requests else []:
            loaded.score(loaded.encoder.encode(features))


def build_app(
    scoring: Scoring, on_start: Callable[[], None], on_stop: Callable[[], None]
) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
        on_start()
        try:
            yield
        finally:
            on_stop()

    def timed(endpoint: str, handler: Handler) -> Handler:
        async def run(request: Request) -> Response:
            start = time.perf_counter()
            response = await handler(request)
            scoring.metrics.latency.labels(endpoint, str(response.status_code)).observe(
                time.perf_counter() - start
            )
            return response

        return run

    routes = [
        Route("/v1/score", timed("score", lambda r: _score(scoring, r)), methods=["POST"]),
        Route("/v1/model", timed("model", lambda r: _model(scoring)), methods=["GET"]),
        Route("/healthz", timed("healthz", _healthz), methods=["GET"]),
        Route("/readyz", timed("readyz", lambda r: _readyz(scoring)), methods=["GET"]),
        Route("/metrics", timed("metrics", _metrics), methods=["GET"]),
        Route("/openapi.json", timed("openapi", _openapi), methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def _error(scoring: Scoring, error: RequestError) -> Response:
    scoring.metrics.rejected.labels(error.reason).inc()
    return _json(error.status, {"error": error.reason, "message": error.message})


async def _score(scoring: Scoring, request: Request) -> Response:
    try:
        _authorize(scoring, request)
        body = await _body(request, scoring.limits.max_body_bytes)
        with scoring.current.lease() as loaded:
            features = parse(body, scoring.limits, loaded.fields)
            try:
                batch = loaded.encoder.encode(features)
            except FeatureError as exc:
                raise RequestError(422, "bad_value", str(exc)) from None
            _check_rows(batch.entries.unique, loaded.source.capacity)
            scores, unseen = loaded.score(batch)
            scoring.metrics.scored(loaded, scores, unseen)
            version = loaded.version
    except RequestError as exc:
        return _error(scoring, exc)
    except NotReady:
        return _error(scoring, RequestError(503, "not_ready", "no snapshot is loaded yet"))
    scoring.recent.append(features)
    return _json(200, {"model": scoring.model, "version": version, "scores": scores.tolist()})


def _check_rows(unique: np.ndarray, capacity: int) -> None:
    """A request's rows must fit the read cache at once (multi-valued fields can hold
    many ids in few bytes)."""
    if len(unique) > capacity:
        raise RequestError(
            413,
            "max_rows",
            f"the request touches {len(unique)} embedding rows, over this worker's "
            f"cache of {capacity} (--cache-rows)",
        )


def _authorize(scoring: Scoring, request: Request) -> None:
    if scoring.token is None:
        return
    given = request.headers.get("authorization", "").removeprefix("Bearer ").encode()
    if not hmac.compare_digest(given, scoring.token):
        raise RequestError(401, "unauthorized", "a valid 'Authorization: Bearer <token>' is needed")


async def _body(request: Request, limit: int) -> bytes:
    """The body, read no further than `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def _model(scoring: Scoring) -> Response:
    loaded = scoring.current.loaded
    if loaded is None:
        return _json(503, {"error": "not_ready", "message": "no snapshot is loaded yet"})
    m = loaded.manifest
    return _json(
        200,
        {
            "model": scoring.model,
            "version": loaded.version,
            "created_s": m.get("created_s"),
            "age_s": scoring.wall() - float(m.get("created_s", 0.0)),
            "newest_ms": m.get("newest_ms"),
            "examples_seen": m.get("examples_seen"),
            "schema": m.get("schema"),
            "description": m.get("model"),
        },
    )


async def _healthz(request: Request) -> Response:
    return _json(200, {"status": "ok"})


async def _readyz(scoring: Scoring) -> Response:
    version = scoring.current.version
    if version is None:
        return _json(503, {"ready": False, "reason": "no snapshot is loaded yet"})
    return _json(200, {"ready": True, "version": version})


async def _metrics(request: Request) -> Response:
    return Response(exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")


async def _openapi(request: Request) -> Response:
    return _json(200, OPENAPI)
