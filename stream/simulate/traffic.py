"""Turns the world's impressions into delivered records plus the truth behind them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from stream.events import CLICKS, DAY_MS, IMPRESSIONS, Click, dumps, encode_click
from stream.simulate.config import SimulationConfig
from stream.simulate.malformed import draw_kind, malformed_record
from stream.simulate.world import (
    AGES,
    CATEGORIES,
    DEVICES,
    GENDERS,
    PLACEMENTS,
    WEEKDAYS,
    Context,
    World,
)

_DUPLICATE_IMPRESSION_DELAY_MS = 60_000
_DUPLICATE_CLICK_DELAY_MS = 10_000


@dataclass(frozen=True, slots=True)
class Record:
    """One record as delivered: logical topic, key, value, event time, delivery time."""

    topic: str
    key: bytes
    value: bytes
    ts: int
    delivery: int


@dataclass(frozen=True)
class Truth:
    """What really happened to each (unique) impression of a day.

    `p_click` is the true click probability; `p_label` the probability that the
    joined label is 1, i.e. that the click also lands inside the attribution
    window; `label` is that realized label.
    """

    day: int
    ids: list[str]
    ts: np.ndarray
    p_click: np.ndarray
    p_label: np.ndarray
    clicked: np.ndarray
    label: np.ndarray


@dataclass(frozen=True)
class DayTraffic:
    day: int
    records: list[Record]
    truth: Truth
    counts: dict[str, int] = field(default_factory=dict)


class Simulator:
    """A deterministic simulation: equal configs yield byte-identical traffic.

    Three independent random streams drive the world, the clicks and the
    delivery anomalies, so that turning an anomaly rate up does not change the
    clean traffic.
    """

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        world_seq, click_seq, delivery_seq = np.random.SeedSequence(config.seed).spawn(3)
        self.world = World(config, np.random.default_rng(world_seq))
        self._clicks = np.random.default_rng(click_seq)
        self._delivery = np.random.default_rng(delivery_seq)
        quantile = NormalDist().inv_cdf(1.0 - config.late_share)
        self._delay_mu = float(np.log(config.window_ms) - config.click_delay_sigma * quantile)
        self._prefix = f"s{config.seed}-"
        self._malformed_seq = 0

    def run(self) -> Iterator[DayTraffic]:
        """Yields each day's records in delivery order; late deliveries roll into the next day."""
        carried: list[Record] = []
        for day in range(self.config.days):
            records, truth, counts = self._day(day)
            records = sorted(carried + records, key=lambda r: r.delivery)
            if day < self.config.days - 1:
                day_end = self.config.start_ms + (day + 1) * DAY_MS
                cut = _first_at_or_after(records, day_end)
                records, carried = records[:cut], records[cut:]
            yield DayTraffic(day, records, truth, counts)
            self.world.drift()

    def _day(self, day: int) -> tuple[list[Record], Truth, dict[str, int]]:
        cfg = self.config
        day_start = cfg.start_ms + day * DAY_MS
        weekday = (day_start // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday
        ctx, offset = self.world.draw_context(cfg.impressions_per_day, int(weekday))
        if day == 0:
            self.world.calibrate(ctx, cfg.ctr)
        p_click = 1.0 / (1.0 + np.exp(-self.world.logit(ctx)))
        ts = day_start + offset
        n = len(ts)
        clicked = self._clicks.random(n) < p_click
        delay = np.maximum(
            1, self._clicks.lognormal(self._delay_mu, cfg.click_delay_sigma, n).astype(np.int64)
        )
        label = clicked & (delay <= cfg.window_ms)
        ids = [f"{self._prefix}{day}-{j}" for j in range(n)]
        truth = Truth(day, ids, ts, p_click, p_click * (1.0 - cfg.late_share), clicked, label)
        records, counts = self._deliver(ctx, ts, ids, clicked, ts + delay, day_start)
        counts["late_clicks"] = int((clicked & ~label).sum())
        return records, truth, counts

    def _deliver(
        self,
        ctx: Context,
        ts: np.ndarray,
        ids: list[str],
        clicked: np.ndarray,
        click_ts: np.ndarray,
        day_start: int,
    ) -> tuple[list[Record], dict[str, int]]:
        cfg, rng = self.config, self._delivery
        n = len(ids)
        imp_delivery = (ts + rng.integers(0, cfg.jitter_ms + 1, n)).tolist()
        values = self._encode_impressions(ctx, ts, ids)
        ts_list = ts.tolist()
        records = [
            Record(IMPRESSIONS, ids[j].encode(), values[j], ts_list[j], imp_delivery[j])
            for j in range(n)
        ]
        dup_imp = np.flatnonzero(rng.random(n) < cfg.duplicate_impression_rate).tolist()
        for j in dup_imp:
            later = imp_delivery[j] + int(rng.integers(1, _DUPLICATE_IMPRESSION_DELAY_MS))
            records.append(Record(IMPRESSIONS, ids[j].encode(), values[j], ts_list[j], later))

        click_idx = np.flatnonzero(clicked).tolist()
        c_ts = click_ts.tolist()
        jitter = rng.integers(0, cfg.jitter_ms + 1, len(click_idx)).tolist()
        dup_mask = (rng.random(len(click_idx)) < cfg.duplicate_click_rate).tolist()
        n_dup = 0
        for j, jit, dup in zip(click_idx, jitter, dup_mask, strict=True):
            rec = self._click(ids[j], c_ts[j], c_ts[j] + jit)
            records.append(rec)
            if dup:
                n_dup += 1
                later = rec.delivery + int(rng.integers(1, _DUPLICATE_CLICK_DELAY_MS))
                records.append(Record(CLICKS, rec.key, rec.value, rec.ts, later))

        n_orphan = int(rng.binomial(len(click_idx), cfg.orphan_click_rate))
        orphan_ts = (day_start + rng.integers(0, DAY_MS, n_orphan)).tolist()
        day = (day_start - cfg.start_ms) // DAY_MS
        for k, o_ts in enumerate(orphan_ts):
            records.append(self._click(f"{self._prefix}{day}-orphan-{k}", o_ts, o_ts))

        n_bad = int(rng.binomial(len(records), cfg.malformed_rate)) if cfg.malformed_rate else 0
        records.extend(self._malformed(n_bad, day_start))
        counts = {
            "impressions": n,
            "duplicate_impressions": len(dup_imp),
            "clicks": len(click_idx),
            "duplicate_clicks": n_dup,
            "orphan_clicks": n_orphan,
            "malformed": n_bad,
        }
        return records, counts

    @staticmethod
    def _click(rid: str, ts: int, delivery: int) -> Record:
        return Record(CLICKS, rid.encode(), encode_click(Click(rid, ts)), ts, delivery)

    def _malformed(self, n: int, day_start: int) -> list[Record]:
        rng = self._delivery
        when = (day_start + rng.integers(0, DAY_MS, n)).tolist()
        topics = rng.integers(0, 2, n).tolist()
        out = []
        for t, topic in zip(when, topics, strict=True):
            self._malformed_seq += 1
            value = malformed_record(draw_kind(rng, topic == 1), self._malformed_seq, t)
            key = f"bad-{self._malformed_seq}".encode()
            out.append(Record((IMPRESSIONS, CLICKS)[topic], key, value, t, t))
        return out

    def _columns(self, ctx: Context) -> list[list[Any]]:
        """Each feature of a day's impressions as a Python list (one C-level pass each)."""
        users, items = self.world.users, self.world.items
        u, i = ctx.user, ctx.item
        return [
            u.tolist(),
            np.asarray(GENDERS)[users.gender[u]].tolist(),
            np.asarray(AGES)[users.age[u]].tolist(),
            users.city[u].tolist(),
            i.tolist(),
            np.asarray(CATEGORIES)[items.category[i]].tolist(),
            items.advertiser[i].tolist(),
            ctx.hour.tolist(),
            np.asarray(WEEKDAYS)[ctx.weekday].tolist(),
            np.asarray(DEVICES)[ctx.device].tolist(),
            np.asarray(PLACEMENTS)[ctx.placement].tolist(),
            users.past_clicks[u].tolist(),
            items.price[i].tolist(),
        ]

    def _encode_impressions(self, ctx: Context, ts: np.ndarray, ids: list[str]) -> list[bytes]:
        columns = zip(ids, ts.tolist(), *self._columns(ctx), strict=True)
        apps = self.world.users.apps
        return [
            dumps(
                {
                    "id": rid,
                    "ts": t,
                    "features": {
                        "user_id": f"u{uid}",
                        "gender": gender,
                        "age": age,
                        "city": f"c{city}",
                        "item_id": f"a{iid}",
                        "category": cat,
                        "advertiser": f"adv{adv}",
                        "hour": str(hour),
                        "weekday": wd,
                        "device": dev,
                        "placement": pl,
                        "user_past_clicks": past,
                        "item_price": price,
                        "installed_apps": apps[uid],
                    },
                }
            )
            for (
                rid,
                t,
                uid,
                gender,
                age,
                city,
                iid,
                cat,
                adv,
                hour,
                wd,
                dev,
                pl,
                past,
                price,
            ) in columns
        ]


def _first_at_or_after(records: list[Record], when: int) -> int:
    lo, hi = 0, len(records)
    while lo < hi:
        mid = (lo + hi) // 2
        if records[mid].delivery < when:
            lo = mid + 1
        else:
            hi = mid
    return lo
