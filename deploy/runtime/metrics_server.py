"""A daemon's Prometheus registry, served on its metrics port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, start_http_server

from deploy.runtime.errors import DeployError


def serve_metrics(port: int) -> CollectorRegistry:
    """A fresh registry, served on `port` (0: not served)."""
    registry = CollectorRegistry()
    if port:
        try:
            start_http_server(port, registry=registry)
        except OSError as exc:
            raise DeployError(f"cannot serve metrics on port {port}: {exc}") from exc
    return registry
