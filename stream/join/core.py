"""The impression-click join, pure and driven by event time.

Each impression waits until its click arrives (label 1 at once, with
`click_ts`) or until its attribution window `[ts, ts + window]` has closed
(label 0). A window is closed once the watermark has passed its end: a click at
exactly `ts + window` still counts. The watermark is the smaller of the two
inputs' largest event times, minus the allowed lateness, so a click stream
that lags the impressions never has its windows closed under it; it is
undefined until both inputs have been seen (`advance_to` moves them on, for an
idle input). Exactly one labeled event leaves per impression id.

Anomalies, all counted: a repeated impression id is ignored; repeated clicks
count once; a click whose impression has not arrived waits `orphan_grace_ms`
of event time for it and is then an orphan; a click after its window is late
and comes out as a `LateClick` (a correction for the trainer). When more than
`max_pending` impressions wait, the oldest is labeled 0 early (`evicted`).

The core holds its state in memory; one core serves one partition. With
`journal=True` it also records every change of its state (`take_changes`), so a
daemon can persist exactly what changed with each batch and `restore` it.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable
from dataclasses import dataclass, fields
from typing import Any

from stream.events import (
    CLICKS,
    IMPRESSIONS,
    Click,
    Impression,
    LabeledEvent,
    decode_input,
)


@dataclass(frozen=True)
class JoinConfig:
    window_ms: int = 30 * 60_000
    allowed_lateness_ms: int = 10_000
    orphan_grace_ms: int = 60_000
    # How long a labeled id is remembered (event time after its window) to catch duplicate
    # impressions and late clicks; a click later than that counts as an orphan.
    retention_ms: int = 6 * 60 * 60_000
    max_pending: int = 2_000_000

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 0:
                raise ValueError(f"join.{f.name} must be >= 0, got {getattr(self, f.name)}")
        if self.max_pending < 1:
            raise ValueError(f"join.max_pending must be >= 1, got {self.max_pending}")


@dataclass(frozen=True, slots=True)
class LateClick:
    """A click that arrived after its impression's window: the label stays 0."""

    id: str
    ts: int
    click_ts: int


@dataclass
class JoinStats:
    impressions: int = 0
    clicks: int = 0
    labels_positive: int = 0
    labels_negative: int = 0
    duplicate_impressions: int = 0
    duplicate_clicks: int = 0
    late_clicks: int = 0
    orphan_clicks: int = 0
    evicted: int = 0


Output = LabeledEvent | LateClick
# One change of state: (kind, id, value); value None deletes. Kinds: PENDING holds an
# Impression, WAITING a click's ts, DONE (label, impression ts, late click reported).
Change = tuple[str, str, Any]
PENDING, WAITING, DONE = "P", "W", "D"


class JoinerCore:
    def __init__(self, config: JoinConfig, journal: bool = False) -> None:
        self.config = config
        self.stats = JoinStats()
        self._max_imp: int | None = None
        self._max_click: int | None = None
        self._changes: dict[tuple[str, str], Any] | None = {} if journal else None
        self._pending: dict[str, Impression] = {}
        self._closing: list[tuple[int, str]] = []  # (window end, id)
        self._waiting: dict[str, int] = {}  # clicks before their impression: id -> click ts
        self._orphaning: list[tuple[int, str]] = []
        self._done: dict[str, tuple[int, int]] = {}  # labeled id -> (label, impression ts)
        self._forgetting: list[tuple[int, str]] = []
        self._late_ids: set[str] = set()  # ids whose late click was already reported

    @property
    def watermark(self) -> int | None:
        if self._max_imp is None or self._max_click is None:
            return None
        return min(self._max_imp, self._max_click) - self.config.allowed_lateness_ms

    @property
    def newest(self) -> int | None:
        """The largest event time seen on either input."""
        known = [t for t in (self._max_imp, self._max_click) if t is not None]
        return max(known) if known else None

    @property
    def event_times(self) -> tuple[int | None, int | None]:
        """The largest event time seen on each input: (impressions, clicks)."""
        return self._max_imp, self._max_click

    def take_changes(self) -> list[Change]:
        """The state changes since the last call, the last one per (kind, id)."""
        if self._changes is None:
            raise ValueError("this joiner core keeps no journal (journal=False)")
        changes = [(kind, rid, value) for (kind, rid), value in self._changes.items()]
        self._changes.clear()
        return changes

    @property
    def unsaved(self) -> bool:
        """Whether the journal holds changes not yet taken."""
        return bool(self._changes)

    def rows(self) -> list[Change]:
        """The whole state as changes that rebuild it (a checkpoint's content)."""
        rows: list[Change] = [(PENDING, rid, imp) for rid, imp in self._pending.items()]
        rows += [(WAITING, rid, ts) for rid, ts in self._waiting.items()]
        late = self._late_ids
        rows += [(DONE, rid, (label, ts, rid in late)) for rid, (label, ts) in self._done.items()]
        return rows

    def restore(
        self,
        event_times: tuple[int | None, int | None],
        pending: Iterable[Impression],
        waiting: Iterable[tuple[str, int]],
        done: Iterable[tuple[str, tuple[int, int, bool]]],
    ) -> None:
        """Rebuilds a core from persisted state (a fresh core, before any record)."""
        self._max_imp, self._max_click = event_times
        config = self.config
        for imp in pending:
            self._pending[imp.id] = imp
            self._closing.append((imp.ts + config.window_ms, imp.id))
        for rid, ts in waiting:
            self._waiting[rid] = ts
            self._orphaning.append((ts + config.orphan_grace_ms, rid))
        for rid, (label, imp_ts, late) in done:
            self._done[rid] = (label, imp_ts)
            self._forgetting.append((imp_ts + config.window_ms + config.retention_ms, rid))
            if late:
                self._late_ids.add(rid)
        for heap in (self._closing, self._orphaning, self._forgetting):
            heapq.heapify(heap)

    def _note(self, kind: str, rid: str, value: Any) -> None:
        if self._changes is not None:
            self._changes[(kind, rid)] = value

    @property
    def pending(self) -> int:
        return len(self._pending)

    def impression(self, imp: Impression) -> list[Output]:
        self.stats.impressions += 1
        self._max_imp = _later(self._max_imp, imp.ts)
        if imp.id in self._pending or imp.id in self._done:
            self.stats.duplicate_impressions += 1
            return self._advance()
        out: list[Output] = []
        click_ts = self._waiting.pop(imp.id, None)
        if click_ts is not None:
            self._note(WAITING, imp.id, None)
        if click_ts is not None and click_ts - imp.ts <= self.config.window_ms:
            out.append(self._label(imp, click_ts))
        else:
            if click_ts is not None:
                self._late(out, imp.id, imp.ts, click_ts)
            self._pending[imp.id] = imp
            self._note(PENDING, imp.id, imp)
            heapq.heappush(self._closing, (imp.ts + self.config.window_ms, imp.id))
            if len(self._pending) > self.config.max_pending:
                out.extend(self._evict_oldest())
        out.extend(self._advance())
        return out

    def click(self, click: Click) -> list[Output]:
        self.stats.clicks += 1
        self._max_click = _later(self._max_click, click.ts)
        out: list[Output] = []
        imp = self._pending.get(click.id)
        if imp is not None:
            if click.ts - imp.ts <= self.config.window_ms:
                del self._pending[click.id]
                self._note(PENDING, click.id, None)
                out.append(self._label(imp, click.ts))
            else:
                self._late(out, imp.id, imp.ts, click.ts)
        elif click.id in self._done:
            label, imp_ts = self._done[click.id]
            if label == 1:
                self.stats.duplicate_clicks += 1
            else:
                self._late(out, click.id, imp_ts, click.ts)
        elif click.id in self._waiting:
            self.stats.duplicate_clicks += 1
            self._waiting[click.id] = min(self._waiting[click.id], click.ts)
            self._note(WAITING, click.id, self._waiting[click.id])
        else:
            self._waiting[click.id] = click.ts
            self._note(WAITING, click.id, click.ts)
            heapq.heappush(self._orphaning, (click.ts + self.config.orphan_grace_ms, click.id))
        out.extend(self._advance())
        return out

    def advance_to(
        self, event_ts: int, inputs: Collection[str] = (IMPRESSIONS, CLICKS)
    ) -> list[Output]:
        """Moves the event time of `inputs` (logical names) on to at least `event_ts`
        without a record: an idle input's wall-clock timeout. An input left out keeps
        holding the watermark back."""
        if IMPRESSIONS in inputs:
            self._max_imp = _later(self._max_imp, event_ts)
        if CLICKS in inputs:
            self._max_click = _later(self._max_click, event_ts)
        return self._advance()

    def flush(self) -> list[Output]:
        """End of input: closes every window and turns every waiting click into an orphan."""
        out: list[Output] = [
            self._close(self._pending[i]) for _, i in sorted(self._closing) if i in self._pending
        ]
        self._closing.clear()
        self.stats.orphan_clicks += len(self._waiting)
        for rid in self._waiting:
            self._note(WAITING, rid, None)
        self._waiting.clear()
        self._orphaning.clear()
        self._late_ids.clear()
        return out

    def close_before(self, event_ts: int) -> list[Output]:
        """Closes the windows a watermark of `event_ts` minus the lateness would close,
        and orphans the clicks it would, without moving either input's event time: an
        idle partition's later records (a backfill, a replayed day) are still judged
        against the event time its records set."""
        return self._close_until(event_ts - self.config.allowed_lateness_ms, forget=False)

    def _advance(self) -> list[Output]:
        mark = self.watermark
        return [] if mark is None else self._close_until(mark, forget=True)

    def _close_until(self, mark: int, forget: bool) -> list[Output]:
        out: list[Output] = []
        while self._closing and self._closing[0][0] < mark:
            _, rid = heapq.heappop(self._closing)
            imp = self._pending.get(rid)
            if imp is not None:
                out.append(self._close(imp))
        while self._orphaning and self._orphaning[0][0] < mark:
            _, rid = heapq.heappop(self._orphaning)
            if self._waiting.pop(rid, None) is not None:
                self._note(WAITING, rid, None)
                self.stats.orphan_clicks += 1
        while forget and self._forgetting and self._forgetting[0][0] < mark:
            rid = heapq.heappop(self._forgetting)[1]
            if self._done.pop(rid, None) is not None:
                self._note(DONE, rid, None)
            self._late_ids.discard(rid)
        return out

    def _label(self, imp: Impression, click_ts: int) -> LabeledEvent:
        self.stats.labels_positive += 1
        self._remember(imp, 1)
        return LabeledEvent(imp.id, imp.ts, 1, click_ts, imp.features)

    def _close(self, imp: Impression) -> LabeledEvent:
        del self._pending[imp.id]
        self._note(PENDING, imp.id, None)
        self.stats.labels_negative += 1
        self._remember(imp, 0)
        return LabeledEvent(imp.id, imp.ts, 0, None, imp.features)

    def _remember(self, imp: Impression, label: int) -> None:
        self._done[imp.id] = (label, imp.ts)
        self._note(DONE, imp.id, (label, imp.ts, imp.id in self._late_ids))
        forget_at = imp.ts + self.config.window_ms + self.config.retention_ms
        heapq.heappush(self._forgetting, (forget_at, imp.id))

    def _late(self, out: list[Output], rid: str, imp_ts: int, click_ts: int) -> None:
        if rid in self._late_ids:
            self.stats.duplicate_clicks += 1
            return
        self._late_ids.add(rid)
        done = self._done.get(rid)
        if done is not None:
            self._note(DONE, rid, (*done, True))
        self.stats.late_clicks += 1
        out.append(LateClick(rid, imp_ts, click_ts))

    def _evict_oldest(self) -> list[Output]:
        while self._closing:
            _, rid = heapq.heappop(self._closing)
            imp = self._pending.get(rid)
            if imp is not None:
                self.stats.evicted += 1
                return [self._close(imp)]
        return []


def _later(current: int | None, ts: int) -> int:
    return ts if current is None or ts > current else current


def join_raw(core: JoinerCore, topic: str, value: bytes | None) -> list[Output]:
    """One encoded record ("impressions", else a click) through `core`; RecordError when
    it does not decode."""
    event = decode_input(topic, value)
    if isinstance(event, Impression):
        return core.impression(event)
    return core.click(event)
