"""Counting what happens to tasks, for the metrics: ends by outcome, durations, pickup delays.

Every status change passes ``transitions._announce``, which calls ``observe()``: a task that
starts adds its pickup delay (from when it was due to its start) to its queue's histogram;
a task that ends adds one to its (task name, outcome) count and its run time to its task's
histogram. Histogram buckets are stored as they are observed (not cumulated: one row changes
per observation) and cumulated when read.

Where the change is made decides when the count is written. The daemon's thread buffers the
counts and writes them together about once a second (``flush()``), so a drain of short tasks
costs a few statements a second, not one per task; a crash of the daemon loses at most that
second's counts. Anywhere else (a request that cancels a scheduled task, the ``tasks``
command) the count is written at once, in the caller's transaction if there is one: it is
rolled back with the change it counts.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import IntegrityError
from django.db.models import F

from djangotasks import routing
from djangotasks.outcomes import outcome
from djangotasks.statuses import FINISHED, Status

if TYPE_CHECKING:
    from djangotasks.models import Task

# Upper bounds in seconds. Tasks here run for minutes to days: so do the buckets.
DURATION_BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 12 * 3600.0, 86400.0,
                    3 * 86400.0)  # fmt: skip
# From due to started: milliseconds on an idle daemon, up to hours behind a backlog.
PICKUP_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0)
INF = "+Inf"
FLUSH_INTERVAL = 1.0

Key = tuple[str, str, str]  # (metric, name, label): one Tally row
Counts = defaultdict[Key, float]

_local = threading.local()  # .pending: the daemon thread's buffer of counts, if any


def bucket(value: float, bounds: tuple[float, ...]) -> str:
    """The label of the first bucket whose upper bound holds ``value`` (Prometheus' ``le``)."""
    for bound in bounds:
        if value <= bound:
            return label_of(bound)
    return INF


def label_of(bound: float) -> str:
    return INF if math.isinf(bound) else f"{bound:g}"


def observe(task: Task, old: str, new: str) -> None:
    """Count a status change of ``task`` (called for every one)."""
    counts: Counts = defaultdict(float)
    if new == Status.RUNNING and old == Status.SCHEDULED and task.start_date is not None:
        due = _due(task)
        if due is not None:
            waited = max(0.0, (task.start_date - due).total_seconds())
            queue = task.queue_name or ""
            counts["pickup", queue, bucket(waited, PICKUP_BUCKETS)] += 1
            counts["pickup_sum", queue, ""] += waited
    elif new in FINISHED and old not in FINISHED:
        ended = outcome(task)
        if ended is not None:
            counts["finished", task.name, ended] += 1
        if task.start_date is not None and task.end_date is not None:
            ran = max(0.0, (task.end_date - task.start_date).total_seconds())
            counts["duration", task.name, bucket(ran, DURATION_BUCKETS)] += 1
            counts["duration_sum", task.name, ""] += ran
    if counts:
        add(counts)


def outage_seen() -> None:
    """A daemon waited out a database outage (counted once it is over)."""
    add(defaultdict(float, {("outages", "", ""): 1.0}))


def add(counts: Counts) -> None:
    pending: Counts | None = getattr(_local, "pending", None)
    if pending is None:
        _write(counts)
        return
    for key, amount in counts.items():
        pending[key] += amount


def buffer() -> None:
    """Buffer this thread's counts until ``flush()`` (the daemon's thread does)."""
    _local.pending = defaultdict(float)


def unbuffer() -> None:
    """Write this thread's counts at once again (a forked task process drops the daemon's)."""
    _local.pending = None


def has_pending() -> bool:
    return bool(getattr(_local, "pending", None))


def flush() -> None:
    """Write this thread's buffered counts in one transaction. Kept if the write fails (the
    database is out): written with the next flush."""
    pending: Counts | None = getattr(_local, "pending", None)
    if not pending:
        return
    taken = defaultdict(float, pending)
    pending.clear()
    try:
        with routing.atomic():
            _write(taken)
    except BaseException:
        for key, amount in taken.items():
            pending[key] += amount
        raise


def totals() -> dict[Key, float]:
    """Every total: one small query (a row per task name and outcome or bucket)."""
    from djangotasks.models import Tally

    rows = Tally.objects.using(routing.alias()).values_list("metric", "name", "label", "value")
    return {(metric, name, label): value for metric, name, label, value in rows}


def _write(counts: Counts) -> None:
    from djangotasks.models import Tally

    tallies = Tally.objects.using(routing.alias())
    for (metric, name, label), amount in sorted(counts.items()):  # one lock order for all
        row = tallies.filter(metric=metric, name=name, label=label)
        if row.update(value=F("value") + amount):
            continue
        try:
            with routing.atomic():  # a savepoint: a lost race must not abort the caller's
                tallies.create(metric=metric, name=name, label=label, value=amount)
        except IntegrityError:
            row.update(value=F("value") + amount)  # created meanwhile by someone else


def _due(task: Task) -> datetime | None:
    """When ``task`` could first have started: scheduled, or its ``run_after`` if later."""
    if task.created_at is None:
        return None
    if task.run_after is not None and task.run_after > task.created_at:
        return task.run_after
    return task.created_at
