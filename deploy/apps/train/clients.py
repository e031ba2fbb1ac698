"""The trainer's parts, opened from configuration: its store (and the position it
resumes from), the `labeled` reader seeked there, the dead-letter producer and the
input thread."""

from __future__ import annotations

import time
from contextlib import ExitStack

from deploy.apps.train.checkpoint import resume_point
from deploy.apps.train.cutter import Cutter
from deploy.apps.train.daemon import TrainDaemon, TrainParts
from deploy.apps.train.feed import Feed
from deploy.apps.train.metrics import TrainMetrics
from deploy.apps.train.publish import Announce, Gate, Publisher
from deploy.apps.train.retention import Retention
from deploy.runtime.errors import ConfigError
from deploy.settings.features import schema_toml
from deploy.settings.tables import Settings, TopicSettings
from deploy.wiring import admission_for, cached_source
from model.features import FeatureEncoder, FeatureSchema
from model.trainer import resolve_device, row_layout
from model.zoo import ModelConfig
from store.admission import Admission
from store.row_store import RowStore
from stream.kafka.admin import ensure_topics
from stream.kafka.labeled_reader import LabeledReader
from stream.kafka.options import ClientOptions
from stream.kafka.producer import TopicProducer


def the_model(settings: Settings) -> ModelConfig:
    return settings.train.model_config(settings.train_daemon.model)


def open_daemon(settings: Settings, metrics: TrainMetrics) -> TrainDaemon:
    """A daemon over freshly opened parts; `run` it to start. On failure closes what it
    had opened."""
    train, cfg = settings.train, settings.train_daemon
    if train.store_dir is None:
        raise ConfigError("fmstream train needs --store-dir: its checkpoints live there")
    model = the_model(settings)
    config = train.trainer_config()
    layout = row_layout(model, config)
    options = settings.kafka.client_options()
    _ensure_outputs(options, settings.topics)
    with ExitStack() as stack:
        store = RowStore(train.store_dir / model.name, layout.width)
        stack.callback(store.close)
        resumed = resume_point(store, model, config)
        schema = _schema(store, resumed.schema, settings.features.schema())
        device = str(resolve_device(train.device))
        source = cached_source(store, layout, train.seed, train.cache_rows, device)
        reader = LabeledReader(options, settings.topics.labeled, cfg.max_poll_records)
        stack.callback(reader.close)
        reader.seek({p: offset for p, (offset, _) in resumed.positions.items()})
        dead = TopicProducer(options, settings.topics.dead_letter)
        stack.callback(dead.close)
        max_skew_ms = int(cfg.max_skew_hours * 3_600_000)
        cutter = Cutter(
            resumed.positions, max_skew_ms, dead, settings.topics.labeled, resumed.newest_ms
        )
        feed = Feed(
            reader,
            cutter,
            schema,
            train.batch_size,
            cfg.max_batch_wait_ms / 1000,
            time.monotonic,
        )
        snapshots = cfg.snapshot_dir or train.store_dir / "snapshots"
        gate = Gate(cfg.gate_min_calibration, cfg.gate_max_calibration, cfg.gate_max_ne_regression)
        announcer, announce = open_announcer(options, settings.topics.snapshots)
        stack.callback(announcer.close)
        retention = Retention(cfg.keep_snapshots, cfg.keep_days, settings.join.window_ms)
        publisher = Publisher(snapshots, model.name, gate, time.time, announce, retention)
        parts = TrainParts(feed, source, reader, dead, publisher, announcer)

        def admission(schema: FeatureSchema) -> Admission | None:
            return admission_for(train, FeatureEncoder(schema).fields)

        daemon = TrainDaemon(
            parts,
            model,
            config,
            cfg,
            metrics,
            time.monotonic,
            resumed,
            admission,
            train.eviction(stored=True),
        )
        stack.pop_all()
    return daemon


def _schema(
    store: RowStore, recorded: FeatureSchema | None, declared: FeatureSchema | None
) -> FeatureSchema | None:
    """The schema to encode with: the store's, which a declared one must equal."""
    if recorded is not None and declared is not None and recorded != declared:
        raise ConfigError(
            f"the store at {store.path} was trained with the feature schema\n"
            f"{schema_toml(recorded)}but the configuration declares\n{schema_toml(declared)}"
            "declare the store's schema, or point --store-dir at a new directory"
        )
    return recorded or declared


def _ensure_outputs(options: ClientOptions, topics: TopicSettings) -> None:
    """Creates the dead-letter and snapshot topics if missing (as the joiner creates its
    outputs); existing ones are left as they are."""
    wanted = {topics.dead_letter: topics.partitions, topics.snapshots: 1}
    ensure_topics(options, wanted, check_counts=False)


def open_announcer(options: ClientOptions, topic: str) -> tuple[TopicProducer, Announce]:
    """A producer to the snapshots topic and the announce that waits until a promoted
    manifest has landed (keyed by the model's name)."""
    producer = TopicProducer(options, topic)

    def announce(model: str, manifest: bytes) -> None:
        producer.send(manifest, [], int(time.time() * 1000), key=model.encode())
        producer.flush()

    return producer, announce
