"""Creating and checking topics."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from stream.errors import BrokerError
from stream.kafka.options import ClientOptions

log = logging.getLogger(__name__)


def ensure_topics(
    options: ClientOptions, partitions: Mapping[str, int], check_counts: bool = True
) -> None:
    """Creates every missing topic; an existing topic must have the expected partition
    count, unless not `check_counts` (a topic another part creates, read by key)."""
    try:
        admin = KafkaAdminClient(**options.admin())
    except KafkaError as exc:
        raise BrokerError(
            f"cannot reach Kafka at {options.bootstrap_servers} to create topics: {exc}"
        ) from exc
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(t, n, 1) for t, n in partitions.items() if t not in existing]
        if missing:
            # Another client may create them concurrently; the counts are checked below.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
            log.info("topics_created names=%s", ",".join(t.name for t in missing))
        actual = topic_partitions(admin, list(partitions))
    except KafkaError as exc:
        raise BrokerError(f"creating topics on {options.bootstrap_servers} failed: {exc}") from exc
    finally:
        admin.close()
    wrong = {t: actual.get(t) for t, n in partitions.items() if actual.get(t) != n}
    if not check_counts:
        wrong = {t: n for t, n in wrong.items() if n is None}
    if wrong:
        detail = ", ".join(f"{t} has {actual.get(t)} (want {partitions[t]})" for t in wrong)
        raise BrokerError(
            f"topic partition counts on {options.bootstrap_servers} differ from the "
            f"configuration: {detail}; delete and recreate them or set topics.partitions"
        )


def topic_partitions(admin: KafkaAdminClient, topics: list[str]) -> dict[str, int]:
    """Partition count of each existing topic (a missing topic is left out)."""
    return {
        d["name"]: len(d["partitions"])
        for d in admin.describe_topics(topics)
        if d["error_code"] == 0
    }
