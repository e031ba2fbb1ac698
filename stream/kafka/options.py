"""kafka-python client options, from a named profile plus the user's pass-through options."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from stream.errors import BrokerError

# Quick group joins and fast reconnects on a single local broker. On a real
# cluster these would cause needless rebalances, so production keeps the
# client's own defaults.
_LOCAL: dict[str, dict[str, Any]] = {
    "common": {
        "bootstrap_timeout_ms": 5_000,
        "reconnect_backoff_ms": 50,
        "reconnect_backoff_max_ms": 1_000,
        "request_timeout_ms": 15_000,
    },
    "consumer": {
        "session_timeout_ms": 3_000,
        "heartbeat_interval_ms": 600,
        "check_crcs": True,
    },
    "producer": {"linger_ms": 10},
}
_PRODUCTION: dict[str, dict[str, Any]] = {
    "common": {"bootstrap_timeout_ms": 30_000},
    "consumer": {},
    "producer": {"linger_ms": 20},
}
PROFILES = {"local": _LOCAL, "production": _PRODUCTION}
_COMMON_KEYS = set(KafkaConsumer.DEFAULT_CONFIG) & set(KafkaProducer.DEFAULT_CONFIG)


def known_option(name: str) -> bool:
    return name in KafkaConsumer.DEFAULT_CONFIG or name in KafkaProducer.DEFAULT_CONFIG


@dataclass(frozen=True)
class ClientOptions:
    """Translates one fmstream Kafka configuration into each client's keyword arguments."""

    bootstrap_servers: str
    profile: str = "production"
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise BrokerError(
                f"unknown Kafka client profile {self.profile!r}; choose one of {sorted(PROFILES)}"
            )
        unknown = sorted(k for k in self.overrides if not known_option(k))
        if unknown:
            raise BrokerError(f"unknown kafka-python option(s) {unknown} under [kafka]")

    def consumer(self, **extra: Any) -> dict[str, Any]:
        return self._build("consumer", KafkaConsumer.DEFAULT_CONFIG, extra)

    def producer(self, **extra: Any) -> dict[str, Any]:
        return self._build("producer", KafkaProducer.DEFAULT_CONFIG, extra)

    def admin(self) -> dict[str, Any]:
        return self._build("admin", _COMMON_KEYS, {})

    def _build(self, role: str, allowed: Any, extra: Mapping[str, Any]) -> dict[str, Any]:
        profile = PROFILES[self.profile]
        merged: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers.split(",")}
        merged.update(profile["common"])
        merged.update(profile.get(role, {}))
        merged.update(self.overrides)
        merged.update(extra)
        return {k: v for k, v in merged.items() if k in allowed}
