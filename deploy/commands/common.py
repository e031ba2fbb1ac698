"""Options shared by several subcommands."""

from __future__ import annotations

import argparse

from deploy.settings.resolve import Option

KAFKA = [
    Option(
        "kafka.bootstrap_servers", "--bootstrap", "Kafka bootstrap servers, host:port[,host:port]"
    ),
    Option(
        "kafka.profile",
        "--kafka-profile",
        "client defaults: 'local' (quick group joins on one local broker) or 'production'",
    ),
]

_SIM_HELP = {
    "seed": "random seed; equal settings give byte-identical traffic",
    "days": "number of simulated days",
    "impressions_per_day": "impressions per simulated day",
    "users": "number of users (Zipf-distributed activity)",
    "items": "number of ads on day 0",
    "new_items_per_day": "new ads appearing each day",
    "advertisers": "number of advertisers",
    "ctr": "target mean click probability on day 0",
    "window_ms": "attribution window in ms (a click later than this is late)",
    "late_share": "share of clicks arriving after the attribution window",
    "click_delay_sigma": "log-normal sigma of the click delay (tail length)",
    "duplicate_click_rate": "share of clicks delivered twice",
    "duplicate_impression_rate": "share of impressions delivered twice",
    "orphan_click_rate": "extra clicks, relative to real ones, whose impression never arrives",
    "malformed_rate": "extra malformed records, relative to all records",
    "jitter_ms": "delivery order is event time plus up to this much noise",
    "start_ms": "event time of the first day's midnight (ms since the epoch, UTC)",
}
SIMULATION = [
    Option(f"simulate.{name}", "--" + name.replace("_", "-"), text)
    for name, text in _SIM_HELP.items()
]
SIMULATE_OUTPUT = [
    Option("simulate.out", "--out", "write JSONL files to this directory instead of the broker"),
    Option(
        "simulate.truth",
        "--truth",
        "truth side file (CSV of every impression's click probability); default OUT/truth.csv",
    ),
    Option(
        "simulate.speed",
        "--speed",
        "event time runs this many times faster than the wall clock; 0 = as fast as possible",
    ),
]

TRAIN = [
    Option(
        "train.models",
        "--models",
        "comma-separated models: lr, fm, fnn, ipnn, opnn, pnn_star, lr_dnn, fm_dnn, deepfm",
    ),
    Option("train.batch_size", "--batch-size", "events per training step"),
    Option("train.device", "--device", "auto (CUDA when present), cpu, cuda or cuda:N"),
    Option("train.seed", "--train-seed", "seed of the dense weights, embeddings and dropout"),
    Option("train.k", "--k", "latent vector size"),
    Option("train.hidden_layers", "--hidden-layers", "hidden layers of the DNN"),
    Option("train.neurons", "--neurons", "neurons per hidden layer (on average, for a shape)"),
    Option("train.shape", "--shape", "network shape: constant, increasing, decreasing, diamond"),
    Option(
        "train.dropout_keep",
        "--dropout-keep",
        "the paper's dropout: probability that a neuron is KEPT (torch uses 1 - this)",
    ),
    Option("train.dense_lr", "--dense-lr", "Adam learning rate of the dense weights"),
    Option(
        "train.sparse_optimizer",
        "--sparse-optimizer",
        "per-row optimizer of whole embedding rows: adagrad, adam, ftrl (empty: FTRL for "
        "order-1 weights, Adagrad for latent vectors)",
    ),
    Option("train.store", "--store", "where embedding rows live: memory or rocksdb"),
    Option(
        "train.store_dir",
        "--store-dir",
        "directory of the RocksDB row stores, one per model (demo: OUT/store)",
    ),
    Option("train.cache_rows", "--cache-rows", "rows the hot-row cache holds on the device"),
    Option(
        "train.admit_after",
        "--admit-after",
        "a value gets its own row after this many sightings (1: at once); before, its field's "
        "shared row",
    ),
    Option(
        "train.admit_after_fields",
        "--admit-after-fields",
        "per-field admission thresholds, FIELD:COUNT[,FIELD:COUNT] (others: --admit-after)",
    ),
    Option("train.sketch_width", "--sketch-width", "counters per row of the admission sketch"),
    Option(
        "train.store_ttl_hours",
        "--store-ttl-hours",
        "delete stored rows unseen for this many hours of event time (0: never)",
    ),
    Option(
        "train.store_max_rows",
        "--store-max-rows",
        "keep at most this many stored rows per model, dropping the least frequent (0: no cap)",
    ),
    Option(
        "train.evict_every_hours",
        "--evict-every-hours",
        "run store eviction every this many hours of event time",
    ),
    Option(
        "train.sparse_lr",
        "--sparse-lr",
        "learning rate of the latent vectors' per-row optimizer, LR's FTRL alpha (0: default)",
    ),
    Option(
        "train.sparse_l2",
        "--sparse-l2",
        "L2 on embedding rows, per step a row is in (Adagrad and Adam; FTRL has its own)",
    ),
    Option(
        "train.sparse_initial_accumulator",
        "--sparse-initial-accumulator",
        "Adagrad's initial accumulator: larger makes a row's first steps follow its gradient",
    ),
    Option(
        "train.max_logit_step",
        "--max-logit-step",
        "most one step may move its batch's logits, rms (models with latent vectors; 0: off)",
    ),
]


def add_store_reuse(parser: argparse.ArgumentParser) -> None:
    """--resume / --fresh: what a run does with a store directory that holds rows."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--resume",
        dest="store_reuse",
        action="store_const",
        const="resume",
        help="continue from the rows in the store directory",
    )
    group.add_argument(
        "--fresh",
        dest="store_reuse",
        action="store_const",
        const="fresh",
        help="delete the store directory's rows first (refused while another process has it)",
    )
