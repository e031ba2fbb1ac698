from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stream.errors import RecordError, SimulationConfigError
from stream.events import DAY_MS, decode_click, decode_impression
from stream.files import JsonlRecordSink
from stream.simulate import DayTraffic, Record, SimulationConfig, Simulator
from stream.simulate.truth import TruthWriter, read_truth
from stream.simulate.world import CATEGORIES, MEAL_HOURS, PLANTED_TRIPLES

SMALL = SimulationConfig(
    seed=11,
    days=3,
    impressions_per_day=40_000,
    users=8_000,
    items=800,
    new_items_per_day=80,
    advertisers=100,
    duplicate_click_rate=0.05,
    duplicate_impression_rate=0.01,
    orphan_click_rate=0.03,
    malformed_rate=0.002,
    late_share=0.1,
)


@pytest.fixture(scope="module")
def days() -> list[DayTraffic]:
    return list(Simulator(SMALL).run())


def _all_records(days: list[DayTraffic]) -> list[Record]:
    return [r for d in days for r in d.records]


def test_equal_seeds_give_identical_traffic_and_truth(days: list[DayTraffic]) -> None:
    again = list(Simulator(SMALL).run())
    assert [(r.topic, r.key, r.value, r.ts) for r in _all_records(again)] == [
        (r.topic, r.key, r.value, r.ts) for r in _all_records(days)
    ]
    for a, b in zip(again, days, strict=True):
        np.testing.assert_array_equal(a.truth.p_click, b.truth.p_click)
    other = next(Simulator(dataclasses.replace(SMALL, seed=12, days=1)).run())
    assert other.records[0].value != days[0].records[0].value


def test_anomalies_do_not_change_the_clean_traffic(days: list[DayTraffic]) -> None:
    clean = dataclasses.replace(SMALL, malformed_rate=0.0, duplicate_click_rate=0.0)
    day0 = next(Simulator(clean).run())
    np.testing.assert_array_equal(day0.truth.p_click, days[0].truth.p_click)
    np.testing.assert_array_equal(day0.truth.label, days[0].truth.label)


def test_realized_clicks_match_the_true_probabilities(days: list[DayTraffic]) -> None:
    p = np.concatenate([d.truth.p_click for d in days])
    clicked = np.concatenate([d.truth.clicked for d in days])
    assert abs(days[0].truth.p_click.mean() - SMALL.ctr) < 1e-6
    edges = np.quantile(p, np.linspace(0, 1, 11))
    bucket = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, 9)
    for b in range(10):
        sel = bucket == b
        expected, observed = p[sel].sum(), clicked[sel].sum()
        # Poisson-binomial sd is below sqrt(expected); allow 4 sd.
        assert abs(observed - expected) < 4 * np.sqrt(expected) + 2, (b, observed, expected)


def test_configured_anomaly_rates_are_realized(days: list[DayTraffic]) -> None:
    total = Counter[str]()
    for d in days:
        total.update(d.counts)
    clicks = total["clicks"]
    assert abs(total["duplicate_clicks"] / clicks - SMALL.duplicate_click_rate) < 0.015
    assert abs(total["orphan_clicks"] / clicks - SMALL.orphan_click_rate) < 0.01
    assert abs(total["late_clicks"] / clicks - SMALL.late_share) < 0.02
    imps = total["impressions"]
    assert abs(total["duplicate_impressions"] / imps - SMALL.duplicate_impression_rate) < 0.002
    records = _all_records(days)
    assert abs(total["malformed"] / len(records) - SMALL.malformed_rate) < 0.001
    # The realized counts are what is really in the stream.
    by_topic = Counter(r.topic for r in records)
    assert by_topic["impressions"] + by_topic["clicks"] == len(records)
    bad = 0
    for r in records:
        try:
            (decode_impression if r.topic == "impressions" else decode_click)(r.value)
        except RecordError:
            bad += 1
    assert bad == total["malformed"] > 0


def test_every_impression_arrives_once_or_as_a_duplicate(days: list[DayTraffic]) -> None:
    seen = Counter(r.key for r in _all_records(days) if r.topic == "impressions")
    ids = [i for d in days for i in d.truth.ids]
    assert len(set(ids)) == len(ids)
    assert all(seen[i.encode()] in (1, 2) for i in ids)
    dup_total = sum(d.counts["duplicate_impressions"] for d in days)
    assert sum(1 for i in ids if seen[i.encode()] == 2) == dup_total


def test_clicks_follow_their_impression_and_labels_follow_the_window(
    days: list[DayTraffic],
) -> None:
    imp_ts = {i: int(t) for d in days for i, t in zip(d.truth.ids, d.truth.ts, strict=True)}
    label = {i: bool(v) for d in days for i, v in zip(d.truth.ids, d.truth.label, strict=True)}
    clicked_ids = set()
    for r in _all_records(days):
        if r.topic != "clicks" or b"orphan" in r.key or r.key.startswith(b"bad-"):
            continue
        click = decode_click(r.value)
        delay = click.ts - imp_ts[click.id]
        assert delay > 0
        assert label[click.id] == (delay <= SMALL.window_ms)
        clicked_ids.add(click.id)
    assert clicked_ids == {
        i for d in days for i, c in zip(d.truth.ids, d.truth.clicked, strict=True) if c
    }


def test_delivery_is_event_time_order_within_the_jitter(days: list[DayTraffic]) -> None:
    records = _all_records(days)
    deliveries = [r.delivery for r in records]
    assert deliveries == sorted(deliveries)
    clean = [r for r in records if not r.key.startswith(b"bad-")]
    event_ts = np.array([r.ts for r in clean])
    lateness = np.maximum.accumulate(event_ts) - event_ts
    # Duplicates may trail by their re-send delay; everything else only by the jitter.
    assert np.quantile(lateness, 0.99) <= SMALL.jitter_ms
    assert lateness.max() <= 60_000 + SMALL.jitter_ms
    assert lateness.max() > 0, "delivery order should not be perfectly sorted"
    assert days[0].records[-1].delivery < SMALL.start_ms + DAY_MS <= days[1].records[0].delivery


def test_impressions_carry_every_kind_of_feature(days: list[DayTraffic]) -> None:
    imp = decode_impression(next(r.value for r in days[0].records if r.topic == "impressions"))
    f = imp.features
    for field in (
        "user_id",
        "gender",
        "age",
        "city",
        "item_id",
        "category",
        "advertiser",
        "hour",
        "weekday",
        "device",
        "placement",
    ):
        assert isinstance(f[field], str), field
    assert isinstance(f["user_past_clicks"], int | float)
    assert isinstance(f["item_price"], int | float)
    assert isinstance(f["installed_apps"], list) and f["installed_apps"]
    new_items = {
        decode_impression(r.value).features["item_id"]
        for r in days[2].records
        if r.topic == "impressions" and not r.key.startswith(b"bad-")
    }
    assert any(int(str(i)[1:]) >= SMALL.items for i in new_items), "new items appear daily"


def test_planted_interactions_move_the_true_probability() -> None:
    sim = Simulator(dataclasses.replace(SMALL, days=1))
    day = next(sim.run())
    rows = [
        decode_impression(r.value)
        for r in day.records
        if r.topic == "impressions" and not r.key.startswith(b"bad-")
    ]
    p = dict(zip(day.truth.ids, day.truth.p_click, strict=True))

    def mean_p(pred: object) -> float:
        return float(np.mean([p[r.id] for r in rows if pred(r.features)]))  # type: ignore[operator]

    meal = {str(h) for h in MEAL_HOURS}
    assert mean_p(lambda f: f["category"] == "food" and f["hour"] in meal) > 1.8 * mean_p(
        lambda f: f["category"] == "food" and f["hour"] not in meal
    )
    gender, age, category, _ = PLANTED_TRIPLES[0]
    assert category in CATEGORIES
    in_segment = mean_p(lambda f: (f["gender"], f["age"], f["category"]) == (gender, age, category))
    others = mean_p(
        lambda f: f["category"] == category and (f["gender"], f["age"]) != (gender, age)
    )
    assert in_segment > 1.8 * others


def test_truth_file_round_trips_and_files_hold_every_record(
    days: list[DayTraffic], tmp_path: Path
) -> None:
    sink = JsonlRecordSink(tmp_path)
    writer = TruthWriter(tmp_path / "truth.csv")
    for d in days:
        for r in d.records:
            sink.write(r)
        writer.write(d.truth)
    sink.close()
    writer.close()
    truth = read_truth(tmp_path / "truth.csv")
    assert list(truth["id"]) == [i for d in days for i in d.truth.ids]
    np.testing.assert_allclose(
        truth["p_click"], np.concatenate([d.truth.p_click for d in days]), rtol=1e-7
    )
    lines = (tmp_path / "impressions.jsonl").read_bytes().splitlines()
    lines += (tmp_path / "clicks.jsonl").read_bytes().splitlines()
    assert len(lines) == len(_all_records(days)) == sink.sent


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"days": 0}, "simulate.days must be > 0"),
        ({"ctr": 0.7}, "simulate.ctr must be in (0, 0.5)"),
        ({"late_share": 0.0}, "simulate.late_share"),
        ({"malformed_rate": 1.5}, "simulate.malformed_rate"),
    ],
)
def test_invalid_parameters_name_the_key(change: dict[str, Any], words: str) -> None:
    with pytest.raises(SimulationConfigError) as info:
        dataclasses.replace(SMALL, **change)
    assert words in str(info.value)
