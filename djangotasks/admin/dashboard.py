"""The tasks dashboard: what runs, what waits, which daemons beat, what failed, and charts.

Every figure comes from a bounded query (a capped count on an index, a time window, a
``LIMIT``), so the page costs the same with a thousand or a million task rows. Everything is
read through ``TaskAdmin.get_queryset`` (the visibility rule as a query); the tasks listed
(running now, recent failures with their logs) are also checked object by object.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import django
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import dateformat, timezone
from django.utils.http import urlencode
from django.utils.translation import gettext as _

from djangotasks import metrics, scheduler
from djangotasks.admin import charts, panels, permissions, results
from djangotasks.admin.pagination import AtLeast
from djangotasks.models import Schedule, Task, Worker
from djangotasks.models.targets import load_targets
from djangotasks.models.worker import load_running, slots
from djangotasks.registry import UnknownTask, registry
from djangotasks.statuses import ACTIVE, FAILED, Status
from djangotasks.templatetags.djangotasks_admin import duration

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from django.http import HttpRequest

    from djangotasks.admin.task_admin import TaskAdmin
    from djangotasks.models.task import TaskQuerySet


# Counts stop here ("10000+"): an exact count of a million rows is not worth its cost.
COUNT_CAP = 10_000
RUNNING_LIMIT = 50
WORKER_LIMIT = 20
FAILURE_LIMIT = 8
FAILURE_WINDOW = timedelta(days=7)
FAILURE_TAIL_CHARS = 800
CHART_HOURS = 24
# Finished rows read for the charts; a busier day is drawn from its most recent rows.
CHART_ROW_CAP = 50_000
NEXT_RUNS = 10
LIVE_REFRESH = "2s"
CHARTS_REFRESH = "30s"
SCHEDULES_REFRESH = "10s"


@dataclass
class StatusCount:
    status: str
    label: str
    count: AtLeast
    url: str


@dataclass
class QueueDepth:
    name: str
    depth: int
    url: str


@dataclass
class Failure:
    task: Task
    tail: str
    change_url: str


@dataclass
class NextRun:
    when: datetime
    schedule: Schedule
    label: str
    url: str
    at: str  # "13:46:05" today, "Thu 4 Dec 03:00:00" later: schedules tick by the second
    until: str  # "4.2 s"


def capped_count(queryset: QuerySet[Any], cap: int = COUNT_CAP) -> AtLeast:
    # No ORDER BY: the model's default ordering would sort every matching row first.
    found = queryset.order_by()[: cap + 1].count()
    return AtLeast(min(found, cap), more=found > cap)


def _check(model_admin: TaskAdmin, request: HttpRequest) -> TaskQuerySet:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    return model_admin.get_queryset(request)


def live_context(model_admin: TaskAdmin, request: HttpRequest) -> dict[str, Any]:
    tasks = _check(model_admin, request)
    now = timezone.now()
    changelist = reverse(f"{model_admin.admin_site.name}:djangotasks_task_changelist")
    counts = [
        StatusCount(
            status,
            str(label),
            capped_count(tasks.filter(status=status)),
            f"{changelist}?status__exact={status}",
        )
        for status, label in Status.choices
        if status != Status.DEFINED
    ]
    running = list(
        tasks.filter(status__in=ACTIVE)
        .select_related("worker", "content_type")
        .order_by("start_date", "id")[:RUNNING_LIMIT]
    )
    load_targets(running)
    running = model_admin.access(request).shown(running)
    workers = list(
        Worker.objects.filter(stopped_at__isnull=True)
        .with_silence()
        .order_by("-last_seen")[:WORKER_LIMIT]
    )
    load_running(workers)
    load = slots(workers)
    return {
        "counts": counts,
        "running": [
            panels.card(request, model_admin.admin_site, t, with_log=False) for t in running
        ],
        "queue_depth": capped_count(tasks.filter(status=Status.SCHEDULED)),
        "queues": queue_depths(tasks, changelist),
        "queue_due": capped_count(tasks.claimable(now)),
        "workers": workers,
        "capacity": load.capacity,
        "busy": load.busy,
        "changelist_url": changelist,
        "now": now,
        "live_url": panels.url(model_admin.admin_site, "dashboard_live"),
        "live_refresh": LIVE_REFRESH,
        "charts_refresh": CHARTS_REFRESH,
    }


def queue_depths(tasks: TaskQuerySet, changelist: str) -> list[QueueDepth]:
    """Scheduled tasks per queue, of the tasks the user may see. Every known queue is
    listed, an empty one with 0: a queue that is missing from the list is not configured."""
    depths = dict.fromkeys(results.known_queues(), 0)
    depths.update(tasks.filter(status=Status.SCHEDULED).queue_depths())
    return [
        QueueDepth(
            name,
            depth,
            f"{changelist}?status__exact={Status.SCHEDULED}&{urlencode({'queue': name})}",
        )
        for name, depth in sorted(depths.items())
    ]


def charts_context(model_admin: TaskAdmin, request: HttpRequest) -> dict[str, Any]:
    tasks = _check(model_admin, request)
    now = timezone.now()
    rows = (
        tasks.filter(end_date__gte=now - timedelta(hours=CHART_HOURS))
        .order_by("-end_date")
        .values_list("end_date", "start_date", "status")[:CHART_ROW_CAP]
    )
    hours = charts.hourly(rows, now, CHART_HOURS)
    failed = list(
        tasks.filter(status__in=FAILED, end_date__gte=now - FAILURE_WINDOW)
        .select_related("content_type")
        .order_by("-end_date")[:FAILURE_LIMIT]
    )
    load_targets(failed)
    failed = model_admin.access(request).shown(failed)
    failures = []
    for task in failed:
        # log_size is final once a task has ended, so the tail is one indexed range query.
        text, _next = task.read_log(max(0, task.log_size - FAILURE_TAIL_CHARS))
        tail = "\n".join(text.rstrip("\n").splitlines()[-6:])
        failures.append(Failure(task, tail, panels.url(model_admin.admin_site, "change", task.pk)))
    return {
        "charts": [charts.throughput_chart(hours), charts.duration_chart(hours)],
        "failures": failures,
        "charts_url": panels.url(model_admin.admin_site, "dashboard_live") + "?part=charts",
        "charts_refresh": CHARTS_REFRESH,
    }


def schedules_context(model_admin: TaskAdmin, request: HttpRequest) -> dict[str, Any]:
    """The next ticks of every schedule (one query), for those who may see schedules."""
    _check(model_admin, request)
    site = model_admin.admin_site
    schedule_admin = permissions.target_admin(site, Schedule)
    if schedule_admin is None or not schedule_admin.has_view_permission(request):
        return {"next_runs": None}
    now, today = timezone.now(), timezone.localdate()
    next_runs = []
    for when, schedule in scheduler.next_runs(NEXT_RUNS):
        try:
            label = registry.get(schedule.task_name).label
        except UnknownTask:
            label = schedule.task_name
        url = reverse(f"{site.name}:djangotasks_schedule_change", args=[schedule.pk])
        local = timezone.localtime(when)
        at = dateformat.format(local, "H:i:s" if local.date() == today else "D j M H:i:s")
        until = duration(max(timedelta(0), when - now))
        next_runs.append(NextRun(when, schedule, label, url, at, until))
    return {
        "next_runs": next_runs,
        "schedules_url": reverse(f"{site.name}:djangotasks_schedule_changelist"),
        "schedules_part_url": panels.url(site, "dashboard_live") + "?part=schedules",
        "schedules_refresh": SCHEDULES_REFRESH,
    }


def page(model_admin: TaskAdmin, request: HttpRequest) -> TemplateResponse:
    context = {
        **model_admin.admin_site.each_context(request),
        "title": _("Tasks dashboard"),
        # Django 6 marks breadcrumbs up as a list; 5.2 as a div.
        "breadcrumbs_as_list": django.VERSION >= (6, 0),
        "opts": model_admin.opts,
        "media": model_admin.media,
        # Whoever sees the dashboard holds view_task, which the metrics view asks for.
        "metrics_url": metrics.url(),
        **live_context(model_admin, request),
        **charts_context(model_admin, request),
        **schedules_context(model_admin, request),
    }
    return TemplateResponse(request, "djangotasks/admin/dashboard.html", context)


def live(model_admin: TaskAdmin, request: HttpRequest) -> TemplateResponse:
    if request.GET.get("part") == "charts":
        return TemplateResponse(
            request, "djangotasks/_dashboard_charts.html", charts_context(model_admin, request)
        )
    if request.GET.get("part") == "schedules":
        return TemplateResponse(
            request,
            "djangotasks/_dashboard_schedules.html",
            schedules_context(model_admin, request),
        )
    return TemplateResponse(
        request, "djangotasks/_dashboard_live.html", live_context(model_admin, request)
    )
