"""The admin of ``djangotasks.Schedule``: staff add, edit, pause, resume and run schedules.

A schedule written in code (``@task(schedule=...)``) is shown, never edited: the code is
where it changes, and the next daemon start would undo an edit. One removed from the code
may be deleted. Every change goes through ``Schedule.save()``, which counts the next tick
again and tells the daemons.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import OuterRef, Subquery
from django.urls import reverse
from django.utils import dateformat, timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from djangotasks import scheduler
from djangotasks.admin import panels, permissions, results
from djangotasks.admin.schedule_form import ScheduleForm
from djangotasks.exceptions import InvalidTransition
from djangotasks.models import Schedule, ScheduleTick, Task
from djangotasks.models.schedule import Outcome, Source
from djangotasks.registry import UnknownTask, registry
from djangotasks.templatetags.djangotasks_admin import short_date, status_badge

if TYPE_CHECKING:
    from django.contrib.admin import AdminSite
    from django.db.models import QuerySet
    from django.http import HttpRequest, HttpResponse

    _ScheduleModelAdmin = admin.ModelAdmin[Schedule]  # generic in the stubs only
else:
    _ScheduleModelAdmin = admin.ModelAdmin

NEXT_RUNS = 5
RECENT_TICKS = 20
# Names listed on the confirmation page of a deletion; the rest are counted.
DELETE_LISTED = 50
DATETIME_FORMAT = "D Y-m-d H:i:s T"


# -- dates in a schedule's own time zone -------------------------------------------------


def zone_of(name: str) -> tzinfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return UTC  # a row written by hand; clean() refuses such a name


def in_zone(moment: datetime, zone: tzinfo) -> str:
    return dateformat.format(moment.astimezone(zone), DATETIME_FORMAT)


def zones_shown(schedule: Schedule) -> list[tzinfo]:
    """A cron schedule's ticks in its own zone, then in the project's (what the rest of the
    admin shows) when that differs; an interval has no zone: the project's only."""
    project = timezone.get_current_timezone()
    if not schedule.cron:
        return [project]
    own = zone_of(schedule.time_zone)
    return [own] if str(own) == str(project) else [own, project]


# -- the admin ---------------------------------------------------------------------------


@dataclass
class TickRow:
    row: ScheduleTick
    when: str
    outcome: str
    task_url: str


class ScheduleAdmin(_ScheduleModelAdmin):
    form = ScheduleForm
    list_display = [
        "name", "task_column", "when_column", "enabled", "source", "next_column",
        "last_run_column",
    ]  # fmt: skip
    list_filter = ["enabled", "source"]
    search_fields = ["name", "task_name"]
    actions = ["pause_selected", "resume_selected", "run_now_selected", "delete_selected"]
    readonly_fields = ["next_runs_column", "source", "created_at", "updated_at"]
    change_form_template = "djangotasks/admin/schedule_change_form.html"

    class Media:
        css = {"all": ["djangotasks/djangotasks.css"]}

    def get_fieldsets(self, request: HttpRequest, obj: Schedule | None = None) -> Any:
        when = ["cron", "interval", "time_zone"]
        fieldsets: list[tuple[Any, dict[str, Any]]] = [
            (None, {"fields": ["name", "task_name", "arguments", "enabled"]}),
            (_("When"), {"fields": when}),
            (_("Missed and overlapping ticks"), {"fields": ["missed", "missed_within", "overlap"]}),
        ]
        if obj is not None:
            when.append("next_runs_column")
            fieldsets.append((_("Record"), {"fields": ["source", "created_at", "updated_at"]}))
        return fieldsets

    # -- permissions: the code is where a code schedule changes --------------------------

    def has_change_permission(self, request: HttpRequest, obj: Schedule | None = None) -> bool:
        if obj is not None and obj.source != Source.ADMIN:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Schedule | None = None) -> bool:
        if obj is not None and obj.source == Source.CODE:
            return False  # the next daemon start would add it again
        return super().has_delete_permission(request, obj)

    def has_run_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(permissions.RUN)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Schedule]:
        queryset = super().get_queryset(request)
        if not request.user.has_perm(permissions.VIEW):
            return queryset  # the last run column stays empty: its tasks are not theirs to see
        # The last run of each schedule on the page, as two subqueries on the (schedule,
        # tick) index rather than a query per row.
        runs = ScheduleTick.objects.filter(
            schedule=OuterRef("pk"), outcome=Outcome.RUN, task__isnull=False
        ).order_by("-tick")
        return queryset.annotate(
            last_run_id=Subquery(runs.values("task")[:1]),
            last_run_status=Subquery(runs.values("task__status")[:1]),
        )

    def get_deleted_objects(
        self, objs: Any, request: HttpRequest
    ) -> tuple[list[str], dict[str, int], set[str], list[str]]:
        """What the confirmation page lists: names and counts, never a schedule's ticks one
        by one (a schedule of every second has 86,400 a day)."""
        schedules = list(objs)
        ticks = ScheduleTick.objects.filter(schedule__in=schedules).count()
        summary = [str(schedule) for schedule in schedules[:DELETE_LISTED]]
        if len(schedules) > DELETE_LISTED:
            summary.append(_("and %d more") % (len(schedules) - DELETE_LISTED))
        counts = {
            str(Schedule._meta.verbose_name_plural): len(schedules),
            str(ScheduleTick._meta.verbose_name_plural): ticks,
        }
        perms_needed: set[str] = set()
        if not self.has_delete_permission(request):
            perms_needed.add(str(Schedule._meta.verbose_name))
        if any(schedule.source == Source.CODE for schedule in schedules):
            perms_needed.add(str(_("schedules defined in code (remove them from the code)")))
        return summary, counts, perms_needed, []

    # -- columns -------------------------------------------------------------------------

    @admin.display(description=_("task"), ordering="task_name")
    def task_column(self, schedule: Schedule) -> str:
        try:
            label = registry.get(schedule.task_name).label
        except UnknownTask:
            return format_html(
                '<span class="djangotasks-gone" title="{}">{}</span>',
                _("no such task"),
                schedule.task_name,
            )
        return format_html('<span title="{}">{}</span>', schedule.task_name, label)

    @admin.display(description=_("when"))
    def when_column(self, schedule: Schedule) -> str:
        return schedule.when

    @admin.display(description=_("next run"), ordering="next_tick")
    def next_column(self, schedule: Schedule) -> str:
        return short_date(schedule.next_tick)

    @admin.display(description=_("last run"))
    def last_run_column(self, schedule: Schedule) -> str:
        task_id = getattr(schedule, "last_run_id", None)
        if task_id is None:
            return "—"
        return format_html(
            '<a href="{}">#{}</a> {}',
            panels.url(self.admin_site, "change", task_id),
            task_id,
            status_badge(Task(pk=task_id, status=getattr(schedule, "last_run_status", ""))),
        )

    @admin.display(description=_("next runs"))
    def next_runs_column(self, schedule: Schedule) -> str:
        ticks = schedule.upcoming(NEXT_RUNS)
        if not ticks:
            if schedule.source == Source.REMOVED:
                return gettext("None: the schedule was removed from the code.")
            return gettext("None: the schedule is paused.")
        zones = zones_shown(schedule)
        lines = (
            (in_zone(tick, zones[0]), " · ".join(in_zone(tick, zone) for zone in zones[1:]))
            for tick in ticks
        )
        items = format_html_join("", '<li>{} <span class="djangotasks-quiet">{}</span></li>', lines)
        return format_html('<ol class="djangotasks-next-runs">{}</ol>', items)

    # -- actions -------------------------------------------------------------------------

    @admin.action(description=_("Pause selected schedules"), permissions=["change"])
    def pause_selected(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._set_enabled(request, queryset, False)

    @admin.action(description=_("Resume selected schedules"), permissions=["change"])
    def resume_selected(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._set_enabled(request, queryset, True)

    def _set_enabled(
        self, request: HttpRequest, queryset: QuerySet[Schedule], enabled: bool
    ) -> None:
        changed, in_code = 0, 0
        for schedule in queryset:
            if not self.has_change_permission(request, schedule):
                in_code += 1
            elif schedule.enabled != enabled:
                schedule.enabled = enabled
                # save(), not update(): it counts the next tick again (a resume starts from
                # now, never with the ticks missed while paused) and tells the daemons.
                schedule.save()
                changed += 1
        if enabled:
            message = ngettext("%d schedule resumed.", "%d schedules resumed.", changed)
        else:
            message = ngettext("%d schedule paused.", "%d schedules paused.", changed)
        self.message_user(request, message % changed, messages.SUCCESS)
        if in_code:
            self.message_user(request, in_code_refused(in_code), messages.WARNING)

    @admin.action(description=_("Run selected schedules now"), permissions=["run"])
    def run_now_selected(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        started, pending, failed = 0, 0, []
        # TypeError: a model method (a row written by hand); the rest as for a task run again.
        errors: tuple[type[Exception], ...] = (TypeError, *results.run_errors())
        for schedule in queryset:
            try:
                scheduler.run_now(schedule)
                started += 1
            except InvalidTransition:  # its previous run is still scheduled or running
                pending += 1
            except errors as exc:
                failed.append(f"{schedule} ({exc})")
        message = ngettext("%d run started.", "%d runs started.", started) % started
        if pending:
            message += " " + (
                ngettext(
                    "%d was already scheduled or running.",
                    "%d were already scheduled or running.",
                    pending,
                )
                % pending
            )
        self.message_user(request, message, messages.SUCCESS if started else messages.WARNING)
        if failed:
            self.message_user(request, _("Could not run: %s") % "; ".join(failed), messages.ERROR)

    # -- pages ---------------------------------------------------------------------------

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        # The schedules of the code are listed before any daemon has started (each daemon
        # syncs them when it starts); this writes only what differs.
        scheduler.sync_code_schedules()
        return super().changelist_view(request, extra_context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        schedule = self.get_object(request, object_id)
        extra_context = dict(extra_context or {})
        if schedule is not None and self.has_view_or_change_permission(request, schedule):
            extra_context["schedule_ticks"] = self.recent_ticks(request, schedule)
        return super().change_view(request, object_id, form_url, extra_context)

    def recent_ticks(self, request: HttpRequest, schedule: Schedule) -> list[TickRow]:
        """The last ticks, newest first, each with a link to its run (where its log is)."""
        zone = zones_shown(schedule)[0]
        may_view_tasks = request.user.has_perm(permissions.VIEW)
        rows = schedule.tick_rows.select_related("task").order_by("-tick")[:RECENT_TICKS]
        return [
            TickRow(
                row,
                in_zone(row.tick, zone),
                str(Outcome(row.outcome).label) if row.outcome in Outcome.values else row.outcome,
                panels.url(self.admin_site, "change", row.task_id)
                if row.task_id is not None and may_view_tasks
                else "",
            )
            for row in rows
        ]


def in_code_refused(count: int) -> str:
    return (
        ngettext(
            "%d schedule defined in code was left alone: change it in the code.",
            "%d schedules defined in code were left alone: change them in the code.",
            count,
        )
        % count
    )


def scheduled_by(request: HttpRequest, admin_site: AdminSite, task: Task) -> SafeString | None:
    """ "Run by schedule X for the tick of T" for a task page, or None: one query."""
    row = (
        task.schedule_ticks.filter(outcome=Outcome.RUN)
        .select_related("schedule")
        .order_by("-tick")
        .first()
    )
    if row is None:
        return None
    schedule = row.schedule
    name: SafeString | str = schedule.name
    schedule_admin = permissions.target_admin(admin_site, Schedule)
    if schedule_admin is not None and schedule_admin.has_view_permission(request, schedule):
        url = reverse(f"{admin_site.name}:djangotasks_schedule_change", args=[schedule.pk])
        name = format_html('<a href="{}">{}</a>', url, schedule.name)
    text = format_html(
        gettext("Run by schedule {} for the tick of {}."),
        name,
        in_zone(row.tick, zones_shown(schedule)[0]),
    )
    if row.note:
        text = format_html('{} <span class="djangotasks-quiet">{}</span>', text, row.note)
    return text
