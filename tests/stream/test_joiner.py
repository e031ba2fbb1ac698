from __future__ import annotations

import pytest

from stream.errors import RecordError
from stream.events import CLICKS, IMPRESSIONS, Click, Impression, LabeledEvent
from stream.join.core import JoinConfig, JoinerCore, LateClick, Output, join_raw
from stream.simulate import SimulationConfig, Simulator

W = 1_000
CONFIG = JoinConfig(window_ms=W, allowed_lateness_ms=100, orphan_grace_ms=500, retention_ms=5_000)


def imp(rid: str, ts: int) -> Impression:
    return Impression(rid, ts, {"f": "x"})


def labels(out: list[Output]) -> list[tuple[str, int]]:
    return [(o.id, o.label) for o in out if isinstance(o, LabeledEvent)]


def test_click_inside_the_window_labels_one_at_once() -> None:
    core = JoinerCore(CONFIG)
    assert core.impression(imp("a", 0)) == []
    out = core.click(Click("a", 400))
    assert out == [LabeledEvent("a", 0, 1, 400, {"f": "x"})]
    assert core.pending == 0


def test_click_exactly_at_the_window_end_still_counts() -> None:
    core = JoinerCore(CONFIG)
    core.impression(imp("a", 0))
    assert labels(core.click(Click("a", W))) == [("a", 1)]


def test_window_closes_only_when_the_watermark_passes_its_end() -> None:
    core = JoinerCore(CONFIG)
    core.click(Click("other", 5_000))
    core.impression(imp("a", 0))
    # Watermark = max ts - lateness; the window [0, 1000] closes once it exceeds 1000.
    assert labels(core.impression(imp("b", W + 100))) == []
    assert labels(core.impression(imp("c", W + 101))) == [("a", 0)]


def test_a_lagging_click_stream_holds_the_windows_open() -> None:
    core = JoinerCore(CONFIG)
    core.impression(imp("a", 0))
    assert core.watermark is None  # no click seen yet: nothing may close
    core.impression(imp("b", 10 * W))
    core.click(Click("x", 100))  # the click input is far behind the impressions
    assert core.watermark == 0
    assert labels(core.click(Click("a", 900))) == [("a", 1)]
    assert labels(core.click(Click("y", 10 * W))) == []  # b's window is still open


def test_journal_and_restore_rebuild_the_same_joiner() -> None:
    live = JoinerCore(CONFIG, journal=True)
    state: dict[tuple[str, str], object] = {}

    def persist() -> None:
        for kind, rid, value in live.take_changes():
            if value is None:
                state.pop((kind, rid), None)
            else:
                state[(kind, rid)] = value

    live.impression(imp("a", 0))
    live.impression(imp("b", 200))
    live.click(Click("b", 300))  # labeled 1: done
    live.impression(imp("c", 400))
    live.advance_to(W + 150)  # a closes (0); c stays pending
    live.click(Click("a", W + 150))  # a late click, reported once
    live.click(Click("early", W + 120))  # waits for its impression
    persist()
    assert ("P", "a") not in state and state[("P", "c")] == imp("c", 400)
    assert state[("D", "a")] == (0, 0, True) and state[("D", "b")] == (1, 200, False)

    restored = JoinerCore(CONFIG)
    restored.restore(
        live.event_times,
        [v for (k, _), v in state.items() if k == "P"],  # type: ignore[misc]
        [(rid, v) for (k, rid), v in state.items() if k == "W"],  # type: ignore[misc]
        [(rid, v) for (k, rid), v in state.items() if k == "D"],  # type: ignore[misc]
    )
    for core in (live, restored):
        assert core.click(Click("a", W + 160)) == []  # the late click was already reported
        assert core.impression(imp("b", 200)) == []  # a duplicate of a labeled id
        assert labels(core.impression(imp("early", W + 100))) == [("early", 1)]
        assert labels(core.advance_to(3 * W)) == [("c", 0)]
    assert live.stats.duplicate_clicks == restored.stats.duplicate_clicks == 1


def test_click_one_ms_after_the_window_is_late_and_the_label_stays_zero() -> None:
    core = JoinerCore(CONFIG)
    core.impression(imp("a", 0))
    out = core.click(Click("a", W + 1))
    assert out == [LateClick("a", 0, W + 1)]
    assert labels(core.advance_to(W + 200)) == [("a", 0)]
    assert core.stats.late_clicks == 1 and core.stats.labels_positive == 0


def test_an_idle_input_moves_on_alone_and_the_other_still_holds_the_watermark() -> None:
    core = JoinerCore(CONFIG)
    for rid, ts in (("a", 0), ("clicked-later", 10), ("never", 20)):
        core.impression(imp(rid, ts))
    core.click(Click("a", 5))
    # The impressions go idle: their event time moves on, the clicks' stays at 5.
    assert core.advance_to(10 * W, [IMPRESSIONS]) == []
    assert core.watermark == 5 - CONFIG.allowed_lateness_ms
    assert labels(core.click(Click("clicked-later", W))) == [("clicked-later", 1)]
    assert core.pending == 1
    # Once the clicks go idle as well, the last window closes.
    assert labels(core.advance_to(10 * W, [CLICKS])) == [("never", 0)]


def test_click_after_the_label_was_emitted_is_a_late_correction() -> None:
    core = JoinerCore(CONFIG)
    core.impression(imp("a", 0))
    assert labels(core.advance_to(2_000)) == [("a", 0)]
    assert core.click(Click("a", 1_900)) == [LateClick("a", 0, 1_900)]


def test_click_before_its_impression_within_the_grace_joins() -> None:
    core = JoinerCore(CONFIG)
    assert core.click(Click("a", 300)) == []
    assert labels(core.impression(imp("a", 100))) == [("a", 1)]
    assert core.stats.orphan_clicks == 0


def test_click_whose_impression_never_comes_becomes_an_orphan_after_the_grace() -> None:
    core = JoinerCore(CONFIG)
    core.click(Click("z", 0))
    core.advance_to(600)  # watermark 500: the grace ends at 500, not yet passed
    assert core.stats.orphan_clicks == 0
    core.advance_to(601)
    assert core.stats.orphan_clicks == 1
    # The impression arriving after all is labeled without the click.
    core.impression(imp("z", 550))
    assert labels(core.advance_to(5_000)) == [("z", 0)]


def test_duplicates_are_counted_and_never_relabeled() -> None:
    core = JoinerCore(CONFIG)
    core.impression(imp("a", 0))
    core.impression(imp("a", 0))
    assert labels(core.click(Click("a", 10))) == [("a", 1)]
    assert core.click(Click("a", 10)) == []
    assert core.impression(imp("a", 0)) == []
    assert (core.stats.duplicate_impressions, core.stats.duplicate_clicks) == (2, 1)


def test_out_of_order_impressions_close_in_event_time_order() -> None:
    core = JoinerCore(CONFIG)
    core.impression(imp("late", 50))
    core.impression(imp("early", 0))
    assert labels(core.advance_to(3_000)) == [("early", 0), ("late", 0)]


def test_idle_partition_is_closed_by_advancing_event_time() -> None:
    core = JoinerCore(CONFIG)
    core.impression(imp("a", 0))
    assert core.advance_to(500) == []
    assert labels(core.advance_to(W + 101)) == [("a", 0)]


def test_pending_cap_labels_the_oldest_early() -> None:
    core = JoinerCore(JoinConfig(window_ms=W, max_pending=2))
    core.impression(imp("a", 0))
    core.impression(imp("b", 1))
    assert labels(core.impression(imp("c", 2))) == [("a", 0)]
    assert core.stats.evicted == 1 and core.pending == 2


def test_flush_closes_everything() -> None:
    core = JoinerCore(CONFIG)
    core.impression(imp("a", 0))
    core.click(Click("q", 5))
    assert labels(core.flush()) == [("a", 0)]
    assert core.stats.orphan_clicks == 1 and core.pending == 0


def test_negative_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"join\.window_ms must be >= 0"):
        JoinConfig(window_ms=-1)


def test_offline_join_of_simulated_traffic_equals_the_truth() -> None:
    """No missing, no extra, no wrong label: the joined labels are the simulator's."""
    sim = SimulationConfig(
        seed=3,
        days=2,
        impressions_per_day=20_000,
        users=2_000,
        items=300,
        late_share=0.1,
        duplicate_click_rate=0.05,
        duplicate_impression_rate=0.02,
        orphan_click_rate=0.05,
        malformed_rate=0.01,
        ctr=0.1,
    )
    # Retention past the longest click delay, so every late click is told from an orphan.
    config = JoinConfig(
        window_ms=sim.window_ms, allowed_lateness_ms=sim.jitter_ms, retention_ms=2 * 86_400_000
    )
    core = JoinerCore(config)
    joined: dict[str, int] = {}
    truth: dict[str, int] = {}
    late = malformed = 0
    for day in Simulator(sim).run():
        truth.update(zip(day.truth.ids, day.truth.label.astype(int).tolist(), strict=True))
        for r in day.records:
            try:
                out = join_raw(core, r.topic, r.value)
            except RecordError:
                malformed += 1
                continue
            for o in out:
                if isinstance(o, LabeledEvent):
                    assert o.id not in joined, "one labeled event per impression"
                    joined[o.id] = o.label
                else:
                    late += 1
    for o in core.flush():
        assert isinstance(o, LabeledEvent) and o.id not in joined
        joined[o.id] = o.label
    assert joined == truth
    days = list(Simulator(sim).run())
    assert core.stats.late_clicks == late == sum(d.counts["late_clicks"] for d in days)
    assert core.stats.orphan_clicks == sum(d.counts["orphan_clicks"] for d in days)
    assert core.stats.duplicate_impressions == sum(d.counts["duplicate_impressions"] for d in days)
    assert core.stats.duplicate_clicks == sum(d.counts["duplicate_clicks"] for d in days)
    assert malformed == sum(d.counts["malformed"] for d in days)
