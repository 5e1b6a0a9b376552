"""The progress throttle: every 5 % of the audio or every 2 s, whichever comes first."""

from __future__ import annotations

from services.transcriber.tests.fakes import FakeClock
from transcriber.progress import ProgressThrottle


def throttle(clock: FakeClock) -> ProgressThrottle:
    return ProgressThrottle(min_fraction=0.05, min_interval_seconds=2.0, clock=clock)


def test_first_report_goes_through_then_five_percent_steps() -> None:
    clock = FakeClock()
    t = throttle(clock)
    assert t.should_report(0.01)
    assert not t.should_report(0.03)
    assert not t.should_report(0.059)
    assert t.should_report(0.061)
    assert not t.should_report(0.07)


def test_two_seconds_let_a_smaller_step_through() -> None:
    clock = FakeClock()
    t = throttle(clock)
    assert t.should_report(0.10)
    clock.now += 1.9
    assert not t.should_report(0.11)
    clock.now += 0.2
    assert t.should_report(0.11)


def test_no_report_without_new_progress_or_at_the_end() -> None:
    clock = FakeClock()
    t = throttle(clock)
    assert t.should_report(0.5)
    clock.now += 10
    assert not t.should_report(0.5)
    assert not t.should_report(1.0), "completion is said by transcript.completed"
