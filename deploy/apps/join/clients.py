"""The join daemon's clients, opened from configuration: the one place that turns
addresses into a consumer, the changelog/output I/O and the local state."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.errors import KafkaError

from deploy.apps.join.daemon import JoinDaemon
from deploy.apps.join.metrics import JoinMetrics
from deploy.apps.join.parts import JoinParts
from deploy.settings.tables import JoinDaemonSettings, TopicSettings
from stream.errors import BrokerError
from stream.join.core import JoinConfig
from stream.join.records import CORRECTIONS, DEAD_LETTER, LABELED
from stream.join.state import JoinState
from stream.kafka.admin import ensure_topics, topic_partitions
from stream.kafka.join_io import JoinIO
from stream.kafka.options import ClientOptions


def open_parts(
    options: ClientOptions, topics: TopicSettings, settings: JoinDaemonSettings
) -> JoinParts:
    """Checks the topics (creating missing outputs) and opens the clients; on failure
    closes what it had opened."""
    with ExitStack() as stack:
        io = open_io(options, topics, settings.group_id)
        stack.callback(io.close)
        state = JoinState(settings.state_dir)
        stack.callback(state.close)
        try:
            consumer = KafkaConsumer(
                **options.consumer(
                    group_id=settings.group_id,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    max_poll_records=settings.max_poll_records,
                    # Range gives every member the same partition numbers of both inputs.
                    partition_assignment_strategy=(RangePartitionAssignor,),
                )
            )
        except KafkaError as exc:
            raise BrokerError(f"cannot join group {settings.group_id}: {exc}") from exc
        stack.pop_all()
    return JoinParts(consumer, io, state)


def open_io(options: ClientOptions, topics: TopicSettings, group_id: str) -> JoinIO:
    """The changelog and output I/O (checking the topics, creating missing outputs);
    its transactional ids are `<group>.<changelog>-<partition>`, shared by every
    instance of the group and by nothing else."""
    counts = partition_counts(options, topics)
    outputs = {LABELED: topics.labeled, CORRECTIONS: topics.corrections}
    outputs[DEAD_LETTER] = topics.dead_letter
    prefix = f"{group_id}.{topics.join_changelog}"
    return JoinIO(options, outputs, topics.join_changelog, counts, prefix)


def partition_counts(options: ClientOptions, topics: TopicSettings) -> dict[str, int]:
    """Creates missing output topics and checks that the inputs are co-partitioned."""
    try:
        admin = KafkaAdminClient(**options.admin())
    except KafkaError as exc:
        raise BrokerError(
            f"cannot reach the Kafka cluster at {options.bootstrap_servers}: {exc}; check "
            "--bootstrap and that the brokers are up"
        ) from exc
    try:
        counts = topic_partitions(admin, [topics.impressions, topics.clicks])
    except KafkaError as exc:
        raise BrokerError(f"describing topics on {options.bootstrap_servers}: {exc}") from exc
    finally:
        admin.close()
    missing = [t for t in (topics.impressions, topics.clicks) if t not in counts]
    if missing:
        raise BrokerError(f"input topics {missing} do not exist on {options.bootstrap_servers}")
    n_imp, n_click = counts[topics.impressions], counts[topics.clicks]
    if n_imp != n_click:
        raise BrokerError(
            f"the join needs co-partitioned inputs, but {topics.impressions} has {n_imp} "
            f"partitions and {topics.clicks} {n_click}: give them the same count and key both "
            "by impression id"
        )
    outputs = {t: n_imp for t in (topics.labeled, topics.corrections, topics.dead_letter)}
    outputs[topics.join_changelog] = n_imp
    ensure_topics(options, outputs)
    return {**counts, **outputs}


def open_daemon(
    options: ClientOptions,
    topics: TopicSettings,
    join: JoinConfig,
    settings: JoinDaemonSettings,
    metrics: JoinMetrics,
    clock: Callable[[], float],
) -> JoinDaemon:
    """A daemon over freshly opened clients; enter it (or `run` it) to start."""
    return JoinDaemon(open_parts(options, topics, settings), topics, join, settings, metrics, clock)
