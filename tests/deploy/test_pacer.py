from __future__ import annotations

from deploy.apps.simulate.driver import Pacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_pacer_runs_event_time_at_the_speed_factor() -> None:
    clock = FakeClock()
    pacer = Pacer(speed=60.0, clock=clock, sleep=clock.sleep)
    pacer.wait_for(1_000_000)  # the first record sets the origin
    pacer.wait_for(1_060_000)  # one event minute later = one wall second at 60x
    assert clock.now == 101.0
    pacer.wait_for(1_060_100)  # 1.7 ms ahead: not worth a sleep
    assert clock.slept == [1.0]


def test_pacer_never_sleeps_when_the_sink_is_slower() -> None:
    clock = FakeClock()
    pacer = Pacer(speed=1000.0, clock=clock, sleep=clock.sleep)
    pacer.wait_for(0)
    clock.now += 5.0  # the sink took 5 s
    pacer.wait_for(1000)
    assert clock.slept == []
