"""`fmstream simulate` onto the real embedded broker, read back by a plain kafka-python consumer."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from deploy.local.broker import EmbeddedBroker
from stream.errors import RecordError
from stream.events import decode_click, decode_impression
from stream.simulate.truth import read_truth

FMSTREAM = str(Path(sys.executable).parent / "fmstream")


def _read_all(broker: EmbeddedBroker, topic: str, partitions: int) -> list[ConsumerRecord]:
    consumer = KafkaConsumer(**broker.client_options.consumer(enable_auto_commit=False))
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    records: list[ConsumerRecord] = []
    try:
        empty_polls = 0
        while empty_polls < 5:
            batches = consumer.poll(timeout_ms=300, max_records=10_000)
            empty_polls = 0 if batches else empty_polls + 1
            for batch in batches.values():
                records.extend(batch)
            # highwater is exact on this broker; end_offsets is not (see DESIGN.md).
            if all(
                consumer.highwater(tp) is not None
                and consumer.position(tp) >= consumer.highwater(tp)
                for tp in tps
            ):
                break
    finally:
        consumer.close()
    return records


def test_simulate_to_broker_round_trips_every_record(
    broker: EmbeddedBroker, make_topics, tmp_path: Path
) -> None:
    topics = make_topics(3)
    config = tmp_path / "fmstream.toml"
    config.write_text(
        f"[kafka]\nbootstrap_servers = '{broker.bootstrap}'\nprofile = 'local'\n"
        f"[topics]\nimpressions = '{topics.impressions}'\nclicks = '{topics.clicks}'\n"
        "partitions = 3\n"
        "[simulate]\ndays = 2\nimpressions_per_day = 4000\nusers = 600\nitems = 120\n"
        "advertisers = 30\nmalformed_rate = 0.002\nctr = 0.08\n"
    )
    truth_path = tmp_path / "truth.csv"
    result = subprocess.run(
        [FMSTREAM, "simulate", "--config", str(config), "--truth", str(truth_path)],
        capture_output=True,
        text=True,
        timeout=180,
        env=dict(os.environ),
        check=False,
    )
    assert result.returncode == 0, result.stderr

    impressions = _read_all(broker, topics.impressions, 3)
    clicks = _read_all(broker, topics.clicks, 3)
    truth = read_truth(truth_path)
    assert len(truth["id"]) == 8000

    decoded_imps, bad = [], 0
    for m in impressions:
        try:
            decoded_imps.append(decode_impression(m.value))
        except RecordError:
            bad += 1
            continue
        assert m.key == decoded_imps[-1].id.encode()
        assert m.timestamp == decoded_imps[-1].ts  # event time travels as CreateTime
    assert {i.id for i in decoded_imps} == set(truth["id"])
    good_clicks = []
    for m in clicks:
        try:
            good_clicks.append(decode_click(m.value))
        except RecordError:
            bad += 1
    assert bad > 0
    clicked = set(truth["id"][truth["clicked"] == 1])
    assert clicked <= {c.id for c in good_clicks}

    # Keyed by impression id: a click lands in its impression's partition.
    part_of = {m.key: m.partition for m in impressions}
    assert all(part_of[m.key] == m.partition for m in clicks if m.key in part_of)
    assert len({m.partition for m in impressions}) == 3

    manifest_counts = Counter[str]()
    for line in result.stderr.splitlines():
        if "day_simulated" in line:
            fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
            manifest_counts["records"] += int(fields["records"])
    assert manifest_counts["records"] == len(impressions) + len(clicks)
    assert len(result.stdout.strip().splitlines()) == 3
