"""Shared fixtures: one real embedded broker per test session, unique topics per test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from deploy.local.broker import EmbeddedBroker, free_port
from deploy.settings.tables import TopicSettings
from stream.kafka.admin import ensure_topics


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(port=free_port(), startup_timeout_s=30.0) as b:
        yield b


@pytest.fixture
def make_topics(broker: EmbeddedBroker) -> Callable[[int], TopicSettings]:
    """A factory of freshly created, uniquely named topics (the broker is shared)."""

    def make(partitions: int = 3) -> TopicSettings:
        topics = TopicSettings.tagged(uuid.uuid4().hex[:8], partitions)
        ensure_topics(broker.client_options, topics.all())
        return topics

    return make
