"""The daemon's view of a database outage: backoff that doubles to a ceiling, and its end."""

from __future__ import annotations

from djangotasks.daemon.outage import FIRST_BACKOFF, Outage


def test_failures_back_off_doubling_up_to_the_ceiling():
    outage = Outage(ceiling=3.0)
    assert not outage.down and outage.may_try(0.0)
    assert outage.failed(100.0)  # begins the outage
    assert outage.down and outage.since == 100.0
    assert outage.retry_at == 100.0 + FIRST_BACKOFF
    assert not outage.may_try(100.4) and outage.may_try(100.5)
    assert not outage.failed(100.5)  # still the same outage
    assert outage.retry_at == 101.5
    waits = []
    for now in (102.0, 110.0, 120.0):
        outage.failed(now)
        waits.append(outage.retry_at - now)
    assert waits == [2.0, 3.0, 3.0]
    assert outage.since == 100.0


def test_a_success_ends_it_and_resets_the_backoff():
    outage = Outage(ceiling=10.0)
    assert outage.ended(5.0) is None  # nothing to end
    outage.failed(10.0)
    outage.failed(11.0)
    assert outage.ended(25.0) == 15.0
    assert not outage.down and outage.may_try(25.0)
    outage.failed(30.0)
    assert outage.retry_at == 30.0 + FIRST_BACKOFF
