"""Entities of the simulated world and the true click logit.

The logit has order-1 effects (user, item, category, advertiser, city, device,
placement, hour, weekday, two continuous features), order-2 interactions
(hour x category with food at meal times, user latent . item latent, installed
apps x category), an order-3 interaction (gender x age x category) and
day-to-day drift (category effects and item popularity random-walk, new items
appear). Everything is vectorized over a day's impressions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stream.simulate.config import SimulationConfig

GENDERS = ("f", "m", "u")
GENDER_P = (0.48, 0.47, 0.05)
AGES = ("<18", "18-24", "25-34", "35-44", "45-54", "55-64", "65+")
AGE_P = (0.06, 0.18, 0.24, 0.20, 0.14, 0.10, 0.08)
CATEGORIES = (
    "food",
    "games",
    "travel",
    "finance",
    "shopping",
    "news",
    "sports",
    "music",
    "video",
    "social",
    "education",
    "health",
    "auto",
    "realestate",
    "beauty",
    "fashion",
    "kids",
    "pets",
    "tech",
    "books",
    "dating",
    "utilities",
    "weather",
    "lottery",
)
DEVICES = ("mobile", "desktop", "tablet")
DEVICE_P = (0.70, 0.22, 0.08)
PLACEMENTS = ("feed", "banner", "sidebar", "search", "video")
PLACEMENT_P = (0.35, 0.20, 0.15, 0.15, 0.15)
PLACEMENT_EFFECT = (0.3, -0.5, -0.6, 0.5, 0.1)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Share of a day's traffic per hour (UTC): quiet nights, evening peak.
HOUR_TRAFFIC = np.array(
    [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 3, 3, 3.5, 4, 3.5, 3, 3, 3.2, 3.6, 4.2, 5, 5.5, 5, 3.5, 2]
)
MEAL_HOURS = (7, 8, 12, 13, 18, 19, 20)
CITIES = 300
LATENT_DIM = 4

_CAT = {name: i for i, name in enumerate(CATEGORIES)}
_AGE = {name: i for i, name in enumerate(AGES)}
_GENDER = {name: i for i, name in enumerate(GENDERS)}
# Planted order-3 effects: segments whose click rate no pair of fields explains.
PLANTED_TRIPLES = (
    ("f", "25-34", "beauty", 1.6),
    ("m", "18-24", "games", 1.4),
    ("f", "35-44", "kids", 1.4),
    ("m", "45-54", "auto", 1.4),
    ("m", "25-34", "finance", 1.2),
    ("f", "55-64", "health", 1.3),
    ("m", "65+", "news", 1.2),
    ("f", "18-24", "fashion", 1.4),
)


def _zipf_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** exponent
    rng.shuffle(w)
    return np.asarray(w / w.sum())


@dataclass
class Users:
    gender: np.ndarray
    age: np.ndarray
    city: np.ndarray
    bias: np.ndarray
    latent: np.ndarray
    past_clicks: np.ndarray
    apps: list[list[str]]
    app_mask: np.ndarray
    activity: np.ndarray


@dataclass
class Items:
    category: np.ndarray
    advertiser: np.ndarray
    bias: np.ndarray
    latent: np.ndarray
    price: np.ndarray
    log_popularity: np.ndarray

    def extend(self, other: Items) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, np.concatenate([getattr(self, name), getattr(other, name)]))


@dataclass(frozen=True)
class Context:
    """One day's impressions as indices into the world's tables."""

    user: np.ndarray
    item: np.ndarray
    hour: np.ndarray
    weekday: np.ndarray
    device: np.ndarray
    placement: np.ndarray


class World:
    def __init__(self, config: SimulationConfig, rng: np.random.Generator) -> None:
        self._rng = rng
        self._advertisers = config.advertisers
        self._new_items = config.new_items_per_day
        self.users = self._make_users(config.users)
        self._advertiser_weights = _zipf_weights(config.advertisers, 1.0, rng)
        self.items = self._make_items(config.items, mean_popularity=0.0)
        self.category_effect = rng.normal(0.0, 0.3, len(CATEGORIES))
        self.advertiser_effect = rng.normal(0.0, 0.2, config.advertisers)
        self.city_effect = rng.normal(0.0, 0.1, CITIES)
        self.device_effect = rng.normal(0.0, 0.2, len(DEVICES))
        self.hour_effect = rng.normal(0.0, 0.1, 24)
        self.weekday_effect = rng.normal(0.0, 0.1, 7)
        self.hour_x_category = self._hour_x_category()
        self.triple = self._gender_age_category()
        log_past = np.log1p(self.users.past_clicks)
        self._past_scale = (log_past.mean(), log_past.std() + 1e-9)
        self.bias = 0.0

    def _make_users(self, n: int) -> Users:
        rng = self._rng
        bias = rng.normal(0.0, 0.3, n)
        past = rng.poisson(np.exp(1.5 + 1.5 * bias + rng.normal(0.0, 0.5, n))).astype(np.int64)
        # Gumbel top-k: each user's apps are a weighted draw without replacement.
        app_pref = rng.dirichlet(np.full(len(CATEGORIES), 0.3), n)
        keys = np.log(app_pref + 1e-300) + rng.gumbel(size=app_pref.shape)
        ranked = np.argsort(-keys, axis=1)
        mask = np.arange(len(CATEGORIES))[None, :] < rng.integers(1, 7, n)[:, None]
        app_mask = np.zeros_like(mask)
        np.put_along_axis(app_mask, ranked, mask, axis=1)
        names = np.asarray(CATEGORIES)
        apps = [names[row].tolist() for row in app_mask]
        return Users(
            gender=rng.choice(len(GENDERS), n, p=GENDER_P),
            age=rng.choice(len(AGES), n, p=AGE_P),
            city=rng.choice(CITIES, n, p=_zipf_weights(CITIES, 1.0, rng)),
            bias=bias,
            latent=rng.normal(0.0, 0.5, (n, LATENT_DIM)),
            past_clicks=past,
            apps=apps,
            app_mask=app_mask,
            activity=_zipf_weights(n, 1.05, rng),
        )

    def _make_items(self, n: int, mean_popularity: float) -> Items:
        rng = self._rng
        return Items(
            category=rng.choice(len(CATEGORIES), n),
            advertiser=rng.choice(self._advertisers, n, p=self._advertiser_weights),
            bias=rng.normal(0.0, 0.4, n),
            latent=rng.normal(0.0, 0.5, (n, LATENT_DIM)),
            price=np.round(rng.lognormal(3.0, 1.0, n), 2),
            log_popularity=rng.normal(mean_popularity, 1.0, n),
        )

    def _hour_x_category(self) -> np.ndarray:
        table = self._rng.normal(0.0, 0.25, (24, len(CATEGORIES)))
        table[list(MEAL_HOURS), _CAT["food"]] += 1.2
        table[20:24, _CAT["games"]] += 0.7
        table[6:9, _CAT["news"]] += 0.6
        return table

    def _gender_age_category(self) -> np.ndarray:
        table = self._rng.normal(0.0, 0.45, (len(GENDERS), len(AGES), len(CATEGORIES)))
        for gender, age, category, effect in PLANTED_TRIPLES:
            table[_GENDER[gender], _AGE[age], _CAT[category]] += effect
        return table

    def draw_context(self, n: int, weekday: int) -> tuple[Context, np.ndarray]:
        """Draws `n` impressions of one day; returns them and their ms offsets in the day."""
        rng = self._rng
        hour = rng.choice(24, n, p=HOUR_TRAFFIC / HOUR_TRAFFIC.sum())
        offset = hour * 3_600_000 + rng.integers(0, 3_600_000, n)
        order = np.argsort(offset, kind="stable")
        popularity = np.exp(self.items.log_popularity - self.items.log_popularity.max())
        ctx = Context(
            user=rng.choice(len(self.users.bias), n, p=self.users.activity)[order],
            item=rng.choice(len(popularity), n, p=popularity / popularity.sum())[order],
            hour=hour[order],
            weekday=np.full(n, weekday),
            device=rng.choice(len(DEVICES), n, p=DEVICE_P)[order],
            placement=rng.choice(len(PLACEMENTS), n, p=PLACEMENT_P)[order],
        )
        return ctx, offset[order]

    def logit(self, ctx: Context) -> np.ndarray:
        u, i = self.users, self.items
        cat = i.category[ctx.item]
        past = (np.log1p(u.past_clicks[ctx.user]) - self._past_scale[0]) / self._past_scale[1]
        log_price = np.log(i.price[ctx.item] + 1.0)
        z = (
            self.bias
            + u.bias[ctx.user]
            + i.bias[ctx.item]
            + self.category_effect[cat]
            + self.advertiser_effect[i.advertiser[ctx.item]]
            + self.city_effect[u.city[ctx.user]]
            + self.device_effect[ctx.device]
            + np.asarray(PLACEMENT_EFFECT)[ctx.placement]
            + self.hour_effect[ctx.hour]
            + self.weekday_effect[ctx.weekday]
            + 0.25 * past
            - 0.25 * (log_price - 3.0)
        )
        z += self.hour_x_category[ctx.hour, cat]
        z += np.einsum("nd,nd->n", u.latent[ctx.user], i.latent[ctx.item])
        z += 0.6 * u.app_mask[ctx.user, cat]
        z += self.triple[u.gender[ctx.user], u.age[ctx.user], cat]
        return np.asarray(z)

    def calibrate(self, ctx: Context, ctr: float) -> None:
        """Sets the global bias so that the mean click probability of `ctx` is `ctr`."""
        self.bias = 0.0
        z = self.logit(ctx)
        lo, hi = -20.0, 20.0
        for _ in range(60):
            mid = (lo + hi) / 2
            if (1.0 / (1.0 + np.exp(-(z + mid)))).mean() < ctr:
                lo = mid
            else:
                hi = mid
        self.bias = (lo + hi) / 2

    def drift(self) -> None:
        """Moves the world one day on: tastes wander, items age, new items appear."""
        rng = self._rng
        self.category_effect += rng.normal(0.0, 0.06, len(CATEGORIES))
        self.items.log_popularity += rng.normal(-0.05, 0.25, len(self.items.log_popularity))
        if self._new_items:
            self.items.extend(self._make_items(self._new_items, mean_popularity=0.5))
