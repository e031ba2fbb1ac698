"""The embedded broker: the session fixture, its errors, and `fmstream broker` as a process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord

from deploy.local.broker import EmbeddedBroker, free_port
from deploy.runtime.errors import BrokerStartError
from stream.errors import BrokerError
from stream.kafka.admin import ensure_topics, topic_partitions

FMSTREAM = str(Path(sys.executable).parent / "fmstream")


def test_fixture_broker_answers_metadata_and_creates_topics(
    broker: EmbeddedBroker, make_topics
) -> None:
    topics = make_topics(3)
    admin = KafkaAdminClient(**broker.client_options.admin())
    try:
        described = topic_partitions(admin, [topics.clicks, "no-such-topic"])
    finally:
        admin.close()
    assert described == {topics.clicks: 3}


def test_existing_topic_with_other_partition_count_is_an_error(
    broker: EmbeddedBroker, make_topics
) -> None:
    topics = make_topics(3)
    ensure_topics(broker.client_options, {topics.clicks: 3})  # idempotent
    with pytest.raises(BrokerError, match=rf"{topics.clicks} has 3 \(want 5\)"):
        ensure_topics(broker.client_options, {topics.clicks: 5})


def test_consumer_group_joins_quickly_with_local_defaults(
    broker: EmbeddedBroker, make_topics
) -> None:
    topics = make_topics(2)
    producer = KafkaProducer(**broker.client_options.producer())
    producer.send(topics.impressions, key=b"k", value=b"v")
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(
        topics.impressions,
        **broker.client_options.consumer(
            group_id=f"g-{uuid.uuid4().hex[:6]}", auto_offset_reset="earliest"
        ),
    )
    start = time.monotonic()
    got: list[ConsumerRecord] = []
    try:
        while not got and time.monotonic() - start < 20:
            for batch in consumer.poll(timeout_ms=200).values():
                got.extend(batch)
    finally:
        consumer.close()
    elapsed = time.monotonic() - start
    assert [m.value for m in got] == [b"v"]
    # kafka-python's default session timeout holds a join on this broker for ~23 s.
    assert elapsed < 10, f"group join took {elapsed:.1f}s"


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(BrokerStartError, match=rf"127.0.0.1:{port}: the port is in use"):
            EmbeddedBroker(port=port).start()


def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BrokerStartError, match="does not exist or is not executable"):
        EmbeddedBroker(port=free_port(), binary=str(tmp_path / "tansu")).start()


def test_binary_from_environment_that_is_missing_is_reported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CALF_TANSU_BIN", str(tmp_path / "nope"))
    with pytest.raises(BrokerStartError, match="no Tansu broker binary found"):
        EmbeddedBroker(port=free_port()).start()


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "fake-broker"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_broker_that_never_answers_times_out_with_its_output(tmp_path: Path) -> None:
    fake = _script(tmp_path, "echo starting up slowly; exec sleep 30")
    broker = EmbeddedBroker(port=free_port(), startup_timeout_s=1.5, binary=fake)
    with pytest.raises(BrokerStartError) as info:
        broker.start()
    assert "did not answer a metadata request within 1.5s" in str(info.value)
    assert "starting up slowly" in str(info.value)
    assert not broker.running()


def test_broker_that_exits_at_start_reports_code_and_output(tmp_path: Path) -> None:
    fake = _script(tmp_path, "echo cannot open storage >&2; exit 3")
    with pytest.raises(BrokerStartError, match="exited with code 3") as info:
        EmbeddedBroker(port=free_port(), binary=fake).start()
    assert "cannot open storage" in str(info.value)


def test_broker_command_creates_topics_and_stops_cleanly_on_sigterm() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [FMSTREAM, "broker", "--port", str(port), "--partitions", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"broker ready on 127.0.0.1:{port}" in line
        admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}")
        try:
            names = set(admin.list_topics())
            parts = topic_partitions(admin, ["labeled"])
        finally:
            admin.close()
        assert {
            "impressions",
            "clicks",
            "labeled",
            "labeled.corrections",
            "fmstream.dead-letter",
            "fmstream.snapshots",
        } <= names
        assert parts == {"labeled": 2}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        # The broker child is gone with it: the port is free again.
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)


def test_broker_child_dies_with_a_killed_parent() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [FMSTREAM, "broker", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    assert "broker ready" in proc.stdout.readline()
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                return  # the Tansu child is gone: its port is free
            except OSError:
                time.sleep(0.1)
    raise AssertionError(f"the broker child still holds port {port} after its parent was killed")
