"""Prometheus metrics: the figures of the tasks' database, for a scrape and for a terminal.

Everything is read from the database at each scrape, in a handful of bounded queries (see
``snapshot``): the live tasks through the status index, the daemons' heartbeats, and the
running totals the daemons keep (``djangotasks.tallies``) for what the task table cannot
give cheaply at a million rows. So any web process may answer, and the figures agree
whichever one does: there is no per-process state to gather (no multiprocess directory).

Labels are task names, queue names, statuses and outcomes only (never an object or task
id), so the number of series is bounded by the code, not by the rows.

``prometheus-client`` is optional (``pip install djangotasks[metrics]``): this module
imports it only to answer a scrape.
"""

from __future__ import annotations

import hmac
import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from typing import TYPE_CHECKING

from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from djangotasks import conf, outcomes, routing, tallies
from djangotasks.statuses import PENDING, Status

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from djangotasks.models.worker import Slots

# The name a project gives the route: the dashboard links to it when it resolves.
URL_NAME = "djangotasks-metrics"
PERMISSION = "djangotasks.view_task"
MISSING = "The metrics need prometheus-client: pip install 'djangotasks[metrics]'\n"
# The statuses the live gauges count: bounded by the work in flight. Finished tasks are
# counted as they end, by djangotasks_tasks_finished_total.
LIVE = tuple(status.value for status in Status if status in PENDING)
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Histogram:
    """Cumulative buckets ``(upper bound, count)``, the last one infinite, and their sum."""

    buckets: tuple[tuple[float, float], ...]
    sum: float

    @property
    def count(self) -> float:
        return self.buckets[-1][1]


@dataclass(frozen=True)
class Snapshot:
    """The figures of one scrape, as plain data (the collector and ``taskd status``)."""

    live: dict[tuple[str, str], int]  # (status, queue)
    slots: Slots
    oldest_due: dict[str, float]  # queue: seconds
    log_bytes: int | None  # None where the database gives no cheap figure
    finished: dict[tuple[str, str], float]  # (task, outcome)
    durations: dict[str, Histogram]  # task name
    pickups: dict[str, Histogram]  # queue
    outages: float


def snapshot() -> Snapshot:
    """Read every figure: six queries, none of which reads finished task rows."""
    from django.db.models import Count, Min
    from django.db.models.functions import Coalesce, Greatest

    from djangotasks.admin.results import known_queues
    from djangotasks.models import Task, Worker
    from djangotasks.models.worker import load_running, slots
    from djangotasks.registry import registry

    queues = known_queues()
    # Every known series, at 0 until counted: a series that first appears with its first
    # count would lose that count to rate() and increase().
    live = {(status, queue): 0 for status in LIVE for queue in queues}
    rows = (
        Task.objects.filter(status__in=LIVE)
        .order_by()
        .values_list("status", "queue_name")
        .annotate(n=Count("*"))
    )
    live.update(((status, queue), n) for status, queue, n in rows)
    workers = list(Worker.objects.alive().with_silence())
    load_running(workers)
    # Due since its run_after, or since it was scheduled when that was later (a retry).
    due = Greatest("created_at", Coalesce("run_after", "created_at"))
    now = timezone.now()
    oldest_due = dict.fromkeys(queues, 0.0)
    oldest = Task.objects.claimable(now).order_by().values_list("queue_name").annotate(due=Min(due))
    for queue, since in oldest:
        oldest_due[queue] = max(0.0, (now - since).total_seconds())
    finished, durations, pickups, outages = _totals([d.name for d in registry], queues)
    return Snapshot(
        live, slots(workers), oldest_due, log_bytes(), finished, durations, pickups, outages
    )


def _totals(
    tasks: list[str], queues: list[str]
) -> tuple[dict[tuple[str, str], float], dict[str, Histogram], dict[str, Histogram], float]:
    """Ends by task and outcome, the two histograms, outages: the running totals (one query)."""
    finished = {(task, ended): 0.0 for task in tasks for ended in outcomes.OUTCOMES}
    outages = 0.0
    counts: dict[str, dict[str, defaultdict[str, float]]] = {
        "duration": {task: defaultdict(float) for task in tasks},
        "pickup": {queue: defaultdict(float) for queue in queues},
    }
    sums: dict[str, defaultdict[str, float]] = {m: defaultdict(float) for m in counts}
    for (metric, name, label), value in tallies.totals().items():
        if metric == "finished":
            finished[name, label] = value
        elif metric == "outages":
            outages += value
        elif metric in counts:
            counts[metric].setdefault(name, defaultdict(float))[label] += value
        elif metric.endswith("_sum") and metric[: -len("_sum")] in sums:
            sums[metric[: -len("_sum")]][name] += value
    bounds = {"duration": tallies.DURATION_BUCKETS, "pickup": tallies.PICKUP_BUCKETS}
    histograms = {
        metric: {
            name: _histogram(raw, sums[metric][name], bounds[metric])
            for name, raw in sorted(counts[metric].items())
        }
        for metric in counts
    }
    return finished, histograms["duration"], histograms["pickup"], outages


def _histogram(raw: dict[str, float], total: float, bounds: tuple[float, ...]) -> Histogram:
    """Cumulate buckets stored as observed. A label is put back in the bucket that holds
    it, so rows counted under other bounds (an older version's) still add up."""
    uppers = [*bounds, math.inf]
    per_bucket = dict.fromkeys(uppers, 0.0)
    for label, value in raw.items():
        try:
            upper = float(label)
        except ValueError:
            upper = math.inf
        held = next(bound for bound in uppers if upper <= bound or math.isinf(bound))
        per_bucket[held] += value
    cumulative, running = [], 0.0
    for upper in uppers:
        running += per_bucket[upper]
        cumulative.append((upper, running))
    return Histogram(tuple(cumulative), total)


def log_bytes() -> int | None:
    """Bytes the database uses for task logs (table and indexes), as it reports them: one
    catalogue lookup, never a read of the logs. None on SQLite, which can only count the
    pages one by one."""
    from djangotasks.models import TaskLogChunk

    connection = routing.connection()
    table = TaskLogChunk._meta.db_table
    if connection.vendor == "postgresql":
        sql = "SELECT pg_total_relation_size(to_regclass(%s))"
        params = [connection.ops.quote_name(table)]
    elif connection.vendor == "mysql":
        # InnoDB's estimate; MySQL 8 caches it (information_schema_stats_expiry).
        sql = (
            "SELECT DATA_LENGTH + INDEX_LENGTH FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s"
        )
        params = [table]
    else:
        return None
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return None if row is None or row[0] is None else int(row[0])


class TasksCollector:
    """A ``prometheus_client`` collector of ``snapshot()``, read at each ``collect()``."""

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        def buckets(histogram: Histogram) -> list[tuple[str, float]]:
            # "1.0", "+Inf": how prometheus-client writes the bounds of its own histograms.
            return [
                (tallies.INF if math.isinf(upper) else repr(upper), n)
                for upper, n in histogram.buckets
            ]

        figures = snapshot()
        live = GaugeMetricFamily(
            "djangotasks_tasks",
            "Tasks scheduled, running or being cancelled, by queue (finished tasks are "
            "counted by djangotasks_tasks_finished_total).",
            labels=["status", "queue"],
        )
        for (status, queue), n in sorted(figures.live.items()):
            live.add_metric([status, queue], n)
        yield live
        yield GaugeMetricFamily(
            "djangotasks_daemons", "Daemons (taskd) alive.", value=figures.slots.daemons
        )
        slots = GaugeMetricFamily(
            "djangotasks_daemon_slots",
            "Task slots of the daemons alive: busy (running a task) or free.",
            labels=["state"],
        )
        slots.add_metric(["busy"], figures.slots.busy)
        slots.add_metric(["free"], figures.slots.free)
        yield slots
        oldest = GaugeMetricFamily(
            "djangotasks_oldest_scheduled_age_seconds",
            "Age of the oldest task that could start now (due, dependencies done) but has "
            "not, by queue; 0 when none waits.",
            labels=["queue"],
        )
        for queue, age in sorted(figures.oldest_due.items()):
            oldest.add_metric([queue], age)
        yield oldest
        if figures.log_bytes is not None:
            yield GaugeMetricFamily(
                "djangotasks_log_bytes",
                "Bytes the database uses for task logs (table and indexes), as it reports.",
                value=figures.log_bytes,
            )
        finished = CounterMetricFamily(
            "djangotasks_tasks_finished",
            "Tasks finished, by task name and outcome.",
            labels=["task", "outcome"],
        )
        for (task, ended), count in sorted(figures.finished.items()):
            finished.add_metric([task, ended], count)
        yield finished
        yield CounterMetricFamily(
            "djangotasks_database_outages",
            "Database outages the daemons waited out.",
            value=figures.outages,
        )
        for name, text, label, histograms in (
            ("djangotasks_task_duration_seconds",
             "Run time of finished tasks, from start to end, by task name.",
             "task", figures.durations),
            ("djangotasks_pickup_delay_seconds",
             "Delay from when a task was due to when a daemon started it, by queue.",
             "queue", figures.pickups),
        ):  # fmt: skip
            family = HistogramMetricFamily(name, text, labels=[label])
            for value, histogram in histograms.items():
                family.add_metric([value], buckets(histogram), histogram.sum)
            yield family


def installed() -> bool:
    return find_spec("prometheus_client") is not None


def url() -> str | None:
    """The metrics URL where the project routes it (named ``URL_NAME``), else None."""
    try:
        return reverse(URL_NAME)
    except NoReverseMatch:
        return None


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The metrics in Prometheus' text format, for the bearer token ``METRICS_TOKEN`` or a
    logged-in user with the ``djangotasks.view_task`` permission.

    Aggregates by task name, queue, status and outcome only: nothing of any object, so the
    view permission is the whole rule (not the admin's per-object visibility).
    """
    refused = _refusal(request)
    if refused is not None:
        return refused
    try:
        from prometheus_client import CollectorRegistry
        from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
    except ImportError:
        return HttpResponse(MISSING, status=503, content_type=TEXT)
    registry = CollectorRegistry()  # one per scrape: no state shared between requests
    registry.register(TasksCollector())
    response = HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response


def _refusal(request: HttpRequest) -> HttpResponse | None:
    """None if the request may read the metrics; else the 401 or 403 to answer."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _space, given = header.partition(" ")
        token = conf.get().METRICS_TOKEN
        if (
            scheme.lower() == "bearer"
            and token is not None
            # In constant time: the time taken must not tell how much of the token matched.
            and hmac.compare_digest(given.strip().encode(), token.encode())
        ):
            return None
        return HttpResponse("Wrong credentials for the metrics.\n", status=403, content_type=TEXT)
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        response = HttpResponse("The metrics need credentials.\n", status=401, content_type=TEXT)
        response["WWW-Authenticate"] = 'Bearer realm="djangotasks"'
        return response
    if not user.has_perm(PERMISSION):
        return HttpResponse(
            f"The metrics need the {PERMISSION} permission.\n", status=403, content_type=TEXT
        )
    return None


def summary(figures: Snapshot) -> list[str]:
    """The figures as lines for a terminal (``taskd status``)."""
    by_outcome = dict.fromkeys(outcomes.OUTCOMES, 0.0)
    for (_task, ended), n in figures.finished.items():
        by_outcome[ended] = by_outcome.get(ended, 0.0) + n
    live: dict[str, int] = dict.fromkeys(LIVE, 0)
    for (status, _queue), n in figures.live.items():
        live[status] += n
    waiting = ", ".join(f"{queue} {age:.1f} s" for queue, age in figures.oldest_due.items())
    stored = "unknown" if figures.log_bytes is None else f"{figures.log_bytes:,} bytes"
    return [
        "tasks finished: " + ", ".join(f"{n:.0f} {word}" for word, n in by_outcome.items()),
        "tasks live: " + ", ".join(f"{n} {status}" for status, n in live.items()),
        f"slots of the daemons alive ({figures.slots.daemons}): {figures.slots.busy} busy, "
        f"{figures.slots.free} free",
        f"oldest task ready to start: {waiting or 'none'}",
        f"task logs stored: {stored}",
        f"database outages seen by the daemons: {figures.outages:.0f}",
    ]
