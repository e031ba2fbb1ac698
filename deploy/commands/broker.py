"""`fmstream broker`: run the embedded Kafka-protocol broker until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging

from deploy.local.broker import EmbeddedBroker
from deploy.runtime.errors import BrokerStartError
from deploy.runtime.signals import stop_on_signals
from deploy.settings.resolve import Option
from deploy.settings.tables import Settings

NAME = "broker"
HELP = "start the embedded Kafka-protocol broker (Tansu) and create the topics"
OPTIONS = [
    Option("broker.host", "--host", "address to listen on"),
    Option("broker.port", "--port", "port to listen on"),
    Option(
        "broker.startup_timeout_s", "--startup-timeout", "seconds to wait for the broker to answer"
    ),
    Option("topics.partitions", "--partitions", "partitions of every topic created"),
]
log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No arguments beyond the configuration options."""


def run(settings: Settings, args: argparse.Namespace) -> int:
    cfg = settings.broker
    with (
        stop_on_signals() as stop,
        EmbeddedBroker(cfg.host, cfg.port, cfg.startup_timeout_s) as broker,
    ):
        broker.create_topics(settings.topics.all())
        print(f"broker ready on {broker.bootstrap} (Ctrl-C or SIGTERM stops it)", flush=True)
        while not stop.wait(0.5):
            if not broker.running():
                raise BrokerStartError(f"the broker exited unexpectedly:\n{broker.output_tail()}")
        log.info("broker_stop_requested bootstrap=%s", broker.bootstrap)
    return 0
