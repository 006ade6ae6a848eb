"""What scheduling costs the caller: djangotasks' ``run()`` next to the peer's ``enqueue()``.

Measured in the bench process while no daemon runs: nothing competes for the database and
nothing runs what was scheduled (the rows are deleted afterwards). The ways compared take
turns, one call (or one loop) each, A B C A B C ..., so a slow moment of the machine falls on
all of them alike. Each ``run()`` is on an object of its own: a second ``run()`` of a
scheduled task only returns it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.statements import Recorder

if TYPE_CHECKING:
    from bench.benchapp.models import Probe
    from bench.suite import Suite

WARM_UP = 5  # calls of each way before the samples: imports, caches, prepared statements
BULK_OBJECTS = 5000


@dataclass(frozen=True)
class Way:
    """One way of scheduling a no-op task; ``calls(n)``: n calls ready to be made."""

    key: str
    label: str
    calls: Callable[[int], list[Callable[[], Any]]]
    loop: bool = True  # also timed in a loop


def new_probes(count: int) -> list[Probe]:
    """``count`` new saved Probe objects, made with one bulk INSERT."""
    from django.db.models import Max

    from bench.benchapp.models import Probe

    last = Probe.objects.aggregate(last=Max("pk"))["last"] or 0
    probes = Probe.objects.bulk_create(Probe() for _ in range(count))
    if any(probe.pk is None for probe in probes):  # a database that returns no ids
        probes = list(Probe.objects.filter(pk__gt=last).order_by("pk"))
    assert len(probes) == count, (len(probes), count)
    return probes


def _ways(suite: Suite) -> list[Way]:
    def shortcut(probe: Probe) -> Any:
        return probe.noop.run()

    def long_form(probe: Probe) -> Any:
        return probe.noop().run()

    ways = [
        Way("run", "`probe.noop.run()`", lambda n: [_bind(shortcut, p) for p in new_probes(n)]),
        Way(
            "run_long",
            "`probe.noop().run()`",
            lambda n: [_bind(long_form, p) for p in new_probes(n)],
            loop=False,
        ),
    ]
    if suite.args.backend:
        from bench.benchapp.tasks import backend_noop

        ways.append(Way("backend_enqueue", "djangotasks backend: `enqueue()`",
                        lambda n: [backend_noop.enqueue] * n))  # fmt: skip
    if suite.args.peer:
        from bench.benchapp.peer import peer_noop

        ways.append(Way("peer_enqueue", "peer: `enqueue()`", lambda n: [peer_noop.enqueue] * n))
    return ways


def _bind(call: Callable[[Probe], Any], probe: Probe) -> Callable[[], Any]:
    return lambda: call(probe)


def turns(items: list[Any], index: int) -> list[Any]:
    """``items`` starting at a different one each round: no way is always first."""
    start = index % len(items)
    return items[start:] + items[:start]


def calls(suite: Suite) -> None:
    """The time of one call (``--calls`` samples each), then ``--tasks`` calls in a loop."""
    ways = _ways(suite)
    samples, tasks = suite.args.calls, suite.args.tasks
    suite.say(f"calls: {samples} of each of {len(ways)} ways, taking turns")
    with _forgotten():
        ready = []
        for way in ways:
            figure = suite.figure(f"{way.key}_call", f"{way.label} call", "ms")
            batch = way.calls(WARM_UP + samples)
            for call in batch[:WARM_UP]:
                call()
            ready.append((figure, batch))
        for index in range(WARM_UP, WARM_UP + samples):
            for figure, batch in turns(ready, index):
                start = time.perf_counter()
                batch[index]()
                figure.samples.append((time.perf_counter() - start) * 1000)
    looped = [way for way in ways if way.loop]
    runs = suite.args.drain_runs
    suite.say(f"calls: {runs} loops of {tasks} calls of each of {len(looped)} ways, taking turns")
    for index in range(runs):
        with _forgotten():
            for way in turns(looped, index):
                figure = suite.figure(f"{way.key}_loop", f"{way.label}: {tasks} in a loop",
                                      "tasks/s")  # fmt: skip
                batch = way.calls(tasks)
                start = time.perf_counter()
                for call in batch:
                    call()
                figure.samples.append(tasks / (time.perf_counter() - start))


def bulk(suite: Suite) -> None:
    """``Probe.noop.run_for()`` of BULK_OBJECTS saved objects: its time and statements."""
    from django.db import connection

    from bench.benchapp.models import Probe

    took = suite.figure("bulk", f"bulk: run_for() of {BULK_OBJECTS:,} objects", "ms")
    sql = suite.figure("bulk_sql", "bulk: statements", "count")
    trips = suite.figure("bulk_rt", "bulk: round trips", "count")
    if not hasattr(Probe.noop, "run_for"):
        took.note = sql.note = "n/a: TaskMethod.run_for() does not exist (yet)"
        suite.say(f"bulk: {took.note}")
        return
    runs = suite.args.drain_runs
    suite.say(f"bulk: {runs} runs of Probe.noop.run_for() on {BULK_OBJECTS:,} new objects")
    for _ in range(runs):
        with _forgotten():
            probes = new_probes(BULK_OBJECTS)
            recorder = Recorder(connection, "djangotasks.", {})
            with recorder.installed():
                start = time.perf_counter()
                scheduled = Probe.noop.run_for(probes)
                elapsed = time.perf_counter() - start
            assert len(scheduled) == BULK_OBJECTS, len(scheduled)
            took.samples.append(elapsed * 1000)
            sql.samples.append(sum(recorder.statements.values()))
            trips.samples.append(sum(recorder.round_trips.values()))


@contextlib.contextmanager
def _forgotten() -> Iterator[None]:
    """Delete the tasks scheduled inside (djangotasks' and the peer's): no daemon may run
    them later, and the next figures start from the same tables."""
    from django.db.models import Max
    from django.utils import timezone

    from djangotasks.models import Task

    last = Task.objects.aggregate(last=Max("pk"))["last"] or 0
    since = timezone.now()
    try:
        yield
    finally:
        Task.objects.filter(pk__gt=last).delete()
        with contextlib.suppress(ImportError):
            from django_tasks_db.models import DBTaskResult

            DBTaskResult.objects.filter(enqueued_at__gte=since).delete()
