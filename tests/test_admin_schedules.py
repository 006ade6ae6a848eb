"""The Schedule admin with Django's test client: pages, form errors, code schedules read-only,
the pause / resume / run-now actions, the schedule named on a task's page, the dashboard."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from djangotasks import scheduler
from djangotasks.models import Schedule, ScheduleTick, Task
from djangotasks.models.schedule import Outcome, Source
from djangotasks.registry import ScheduleSpec, registry
from djangotasks.statuses import Status
from tests.test_admin import make_task, staff, url

pytestmark = pytest.mark.django_db

EVERY_TICK = "tests.tasks.every_tick"
ADD = "tests.backend_tasks.add"  # a Django task: it takes arguments


def schedule_url(name: str, *args: object) -> str:
    return reverse(f"admin:djangotasks_schedule_{name}", args=args)


def make_schedule(name: str = "nightly", **fields: object) -> Schedule:
    fields = {"task_name": EVERY_TICK, "cron": "0 3 * * *", "time_zone": "Europe/Paris", **fields}
    return Schedule.objects.create(name=name, **fields)


@pytest.fixture
def code_schedule(monkeypatch: pytest.MonkeyPatch) -> Schedule:
    """every_tick as if it had ``@task(schedule="0 3 * * *", time_zone="Europe/Paris")``."""
    spec = ScheduleSpec(cron="0 3 * * *", time_zone="Europe/Paris")
    definition = dataclasses.replace(registry.get(EVERY_TICK), schedule=spec)
    monkeypatch.setitem(registry._definitions, EVERY_TICK, definition)
    scheduler.sync_code_schedules()
    return Schedule.objects.get(name=EVERY_TICK, source=Source.CODE)


def form_data(**fields: object) -> dict[str, object]:
    """A valid add form, as the browser posts it; ``fields`` replace some values."""
    data: dict[str, object] = {
        "name": "every minute",
        "task_name": EVERY_TICK,
        "arguments": "{}",
        "enabled": "on",
        "cron": "* * * * *",
        "interval": "",
        "time_zone": "Europe/Paris",
        "missed": "latest",
        "missed_within": "01:00:00",
        "overlap": "skip",
    }
    data.update(fields)
    return data


def act(client, action: str, *schedules: Schedule):
    return client.post(
        schedule_url("changelist"),
        {"action": action, "_selected_action": [s.pk for s in schedules]},
        follow=True,
    )


# -- pages -------------------------------------------------------------------------------


def test_list_shows_task_timing_next_and_last_run(admin_client, django_assert_max_num_queries):
    nightly = make_schedule("<b>nightly</b>")
    make_schedule("often", cron="", interval=timedelta(seconds=30), enabled=False)
    make_schedule("gone", task_name="tests.tasks.no_such_task")
    for i in range(20):
        make_schedule(f"more {i}")
    run = make_task(None, EVERY_TICK, Status.UNSUCCESSFUL)
    tick = datetime(2025, 1, 1, 2, tzinfo=UTC)
    ScheduleTick.objects.create(schedule=nightly, tick=tick, outcome=Outcome.RUN, task=run)
    # A later skipped tick points at the run it overlapped: the last run is still that one.
    ScheduleTick.objects.create(
        schedule=nightly, tick=tick + timedelta(days=1), outcome=Outcome.MISSED
    )
    # Schedules, each with its last run, are a query or two whatever their number.
    with django_assert_max_num_queries(12):
        response = admin_client.get(schedule_url("changelist"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "&lt;b&gt;nightly&lt;/b&gt;" in html and "<b>nightly</b>" not in html
    assert '<span title="tests.tasks.every_tick">Every tick</span>' in html
    assert "0 3 * * * (Europe/Paris)" in html and "every 30 s" in html
    assert 'djangotasks-gone" title="no such task">tests.tasks.no_such_task' in html
    badge = '<span class="djangotasks-badge djangotasks-status-unsuccessful">Unsuccessful</span>'
    assert f'<a href="{url("change", run.pk)}">#{run.pk}</a> {badge}' in html


def test_last_run_is_hidden_from_those_who_may_not_see_tasks():
    schedule = make_schedule()
    run = make_task(None, EVERY_TICK)
    ScheduleTick.objects.create(
        schedule=schedule, tick=timezone.now(), outcome=Outcome.RUN, task=run
    )
    client = staff("djangotasks.view_schedule")
    html = client.get(schedule_url("changelist")).content.decode()
    assert "nightly" in html and url("change", run.pk) not in html
    html = client.get(schedule_url("change", schedule.pk)).content.decode()
    assert url("change", run.pk) not in html and f"#{run.pk}" in html


def test_change_page_shows_next_runs_in_both_zones_and_recent_ticks(
    admin_client, django_assert_max_num_queries
):
    schedule = make_schedule()
    for day in range(1, 30):  # more than the page shows
        ScheduleTick.objects.create(
            schedule=schedule, tick=datetime(2025, 7, day, 1, tzinfo=UTC), outcome=Outcome.MISSED
        )
    with django_assert_max_num_queries(8):
        html = admin_client.get(schedule_url("change", schedule.pk)).content.decode()
    # The next five ticks, at 03:00 in Paris (CET or CEST), and in the project's UTC.
    next_runs = html.split('<ol class="djangotasks-next-runs">')[1].split("</ol>")[0]
    assert next_runs.count("<li>") == 5
    assert next_runs.count(" 03:00:00 CE") == 5 and next_runs.count(":00:00 UTC") == 5
    # The last twenty ticks, newest first, in the schedule's zone.
    ticks = html.split('id="djangotasks-ticks-title"')[1]
    assert ticks.count("<tr>") == 21  # and the header row
    days = re.findall(r"\w{3} 2025-07-(\d\d) 03:00:00 CEST", ticks)
    assert days == [f"{day:02d}" for day in range(29, 9, -1)]


def test_ticks_link_to_their_runs_and_escape_notes(admin_client):
    schedule = make_schedule()
    run = make_task(None, EVERY_TICK, Status.SUCCESSFUL)
    now = timezone.now()
    ScheduleTick.objects.create(schedule=schedule, tick=now, outcome=Outcome.RUN, task=run)
    ScheduleTick.objects.create(
        schedule=schedule,
        tick=now - timedelta(days=1),
        outcome=Outcome.ERROR,
        note="<script>alert(1)</script>",
    )
    html = admin_client.get(schedule_url("change", schedule.pk)).content.decode()
    assert f'<a href="{url("change", run.pk)}">#{run.pk}</a>' in html
    assert "djangotasks-status-successful" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    assert "djangotasks-outcome-error" in html and "Could not run" in html


def test_a_paused_schedule_has_no_next_runs(admin_client):
    schedule = make_schedule(enabled=False)
    html = admin_client.get(schedule_url("change", schedule.pk)).content.decode()
    assert "None: the schedule is paused." in html
    assert "No tick yet." in html


def test_add_form_offers_function_and_django_tasks_only(admin_client):
    html = admin_client.get(schedule_url("add")).content.decode()
    assert f'<option value="{EVERY_TICK}">Every tick ({EVERY_TICK})</option>' in html
    assert f'<option value="{ADD}">' in html
    assert 'value="tests.Job.hello"' not in html  # a model method
    assert '<optgroup label="Function tasks">' in html and '<optgroup label="Django tasks">' in html
    assert 'list="djangotasks-time-zones"' in html and '<option value="Europe/Paris">' in html
    assert "next runs" not in html.lower()  # nothing to count from before it is saved


def test_add_saves_a_schedule_with_its_next_tick(admin_client):
    response = admin_client.post(schedule_url("add"), form_data())
    assert response.status_code == 302, response.content.decode()
    schedule = Schedule.objects.get()
    assert schedule.source == Source.ADMIN and schedule.enabled
    assert schedule.next_tick is not None and schedule.next_tick > timezone.now()
    assert schedule.next_tick.second == 0


def test_a_django_task_schedule_takes_arguments(admin_client):
    data = form_data(task_name=ADD, arguments='{"args": [1, 2]}')
    assert admin_client.post(schedule_url("add"), data).status_code == 302
    assert Schedule.objects.get().arguments == {"args": [1, 2]}


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"cron": "61 * * * *"}, "cron", ""),
        ({"cron": "every day"}, "cron", ""),
        ({"cron": "", "interval": ""}, "cron", "Give a cron expression or an interval."),
        ({"interval": "00:01:00"}, "interval", "not both"),
        ({"time_zone": "Mars/Olympus_Mons"}, "time_zone", "time zone"),
        ({"task_name": "tests.Job.hello"}, "task_name", "is a model method"),
        ({"task_name": "tests.tasks.no_such_task"}, "task_name", "No @task is registered"),
        ({"task_name": ""}, "task_name", "required"),
        ({"arguments": '{"args": [1]}'}, "arguments", "Only Django tasks take arguments"),
        ({"task_name": ADD, "arguments": '{"x": 1}'}, "arguments", '{"args": [...]'),
        ({"task_name": ADD, "arguments": "{"}, "arguments", "valid JSON"),
    ],
)
def test_bad_input_is_a_form_error_and_saves_nothing(admin_client, fields, field, message):
    response = admin_client.post(schedule_url("add"), form_data(**fields))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == [field], errors
    assert message in " ".join(errors[field])
    assert 'class="errorlist' in response.content.decode()
    assert not Schedule.objects.exists()


def test_an_edit_of_a_schedule_counts_its_next_tick_again(admin_client):
    schedule = make_schedule()
    first = schedule.next_tick
    data = form_data(name="nightly", cron="", interval="00:00:10")
    response = admin_client.post(schedule_url("change", schedule.pk), data)
    assert response.status_code == 302, response.content.decode()
    schedule.refresh_from_db()
    assert schedule.interval == timedelta(seconds=10) and schedule.cron == ""
    assert schedule.next_tick is not None and schedule.next_tick != first
    assert schedule.next_tick - timezone.now() <= timedelta(seconds=10)


def test_a_schedule_whose_task_is_gone_keeps_its_name_in_the_form(admin_client):
    schedule = make_schedule(task_name="tests.tasks.removed_since")
    html = admin_client.get(schedule_url("change", schedule.pk)).content.decode()
    assert (
        '<option value="tests.tasks.removed_since" selected>'
        "tests.tasks.removed_since (no such task)</option>"
    ) in html
    response = admin_client.post(
        schedule_url("change", schedule.pk),
        form_data(name="nightly", task_name="tests.tasks.removed_since"),
    )
    assert "No @task is registered" in " ".join(
        response.context["adminform"].form.errors["task_name"]
    )


# -- code schedules ----------------------------------------------------------------------


def test_code_schedules_are_read_only(admin_client, code_schedule):
    code = code_schedule
    response = admin_client.get(schedule_url("change", code.pk))
    html = response.content.decode()
    assert response.status_code == 200
    assert 'name="_save"' not in html and 'name="cron"' not in html
    assert "0 3 * * *" in html and "Code (@task schedule)" in html
    assert "deletelink" not in html
    assert admin_client.post(schedule_url("change", code.pk), form_data()).status_code == 403
    assert admin_client.post(schedule_url("delete", code.pk), {"post": "yes"}).status_code == 403
    # Deleting a selection that holds one is refused whole.
    other = make_schedule("other")
    selection = {"action": "delete_selected", "_selected_action": [code.pk, other.pk]}
    html = admin_client.post(schedule_url("changelist"), selection).content.decode()
    assert "Cannot delete schedules" in html and "schedules defined in code" in html
    response = admin_client.post(schedule_url("changelist"), {**selection, "post": "yes"})
    assert response.status_code == 403
    assert Schedule.objects.count() == 2


def test_a_schedule_removed_from_the_code_may_be_deleted(admin_client):
    removed = make_schedule("tests.tasks.every_tick", source=Source.REMOVED)
    for day in range(1, 4):
        ScheduleTick.objects.create(
            schedule=removed, tick=datetime(2025, 1, day, tzinfo=UTC), outcome=Outcome.MISSED
        )
    html = admin_client.get(schedule_url("change", removed.pk)).content.decode()
    assert 'name="_save"' not in html and "None: the schedule was removed from the code." in html
    # The confirmation page counts the ticks rather than listing them.
    html = admin_client.get(schedule_url("delete", removed.pk)).content.decode()
    assert "<li>Schedule ticks: 3</li>" in html
    assert admin_client.post(schedule_url("delete", removed.pk), {"post": "yes"}).status_code == 302
    assert not Schedule.objects.exists() and not ScheduleTick.objects.exists()


def test_the_list_adds_the_schedules_of_the_code(admin_client, monkeypatch):
    spec = ScheduleSpec(interval=timedelta(minutes=5))
    definition = dataclasses.replace(registry.get(EVERY_TICK), schedule=spec)
    monkeypatch.setitem(registry._definitions, EVERY_TICK, definition)
    html = admin_client.get(schedule_url("changelist")).content.decode()
    schedule = Schedule.objects.get()
    assert schedule.source == Source.CODE and schedule.interval == timedelta(minutes=5)
    assert "every 5 min" in html
    # Gone from the code: the list says so, and keeps the row (and its history).
    monkeypatch.setitem(
        registry._definitions, EVERY_TICK, dataclasses.replace(definition, schedule=None)
    )
    admin_client.get(schedule_url("changelist"))
    schedule.refresh_from_db()
    assert schedule.source == Source.REMOVED


# -- actions -----------------------------------------------------------------------------


def test_pause_and_resume_save_each_schedule(admin_client, code_schedule):
    nightly = make_schedule()
    code = code_schedule
    response = act(admin_client, "pause_selected", nightly, code)
    html = response.content.decode()
    assert "1 schedule paused." in html
    assert "1 schedule defined in code was left alone" in html
    nightly.refresh_from_db()
    code.refresh_from_db()
    assert not nightly.enabled and nightly.next_tick is None
    assert code.enabled and code.next_tick is not None
    response = act(admin_client, "resume_selected", nightly)
    assert "1 schedule resumed." in response.content.decode()
    nightly.refresh_from_db()
    assert nightly.enabled and nightly.next_tick is not None
    assert nightly.next_tick > timezone.now()


def test_pause_and_resume_need_the_change_permission():
    schedule = make_schedule()
    viewer = staff("djangotasks.view_schedule")
    html = viewer.get(schedule_url("changelist")).content.decode()
    assert "pause_selected" not in html and "run_now_selected" not in html
    act(viewer, "pause_selected", schedule)
    schedule.refresh_from_db()
    assert schedule.enabled


def test_run_now_starts_a_run_recorded_as_a_tick():
    schedule = make_schedule()
    client = staff("djangotasks.view_schedule", "djangotasks.run_task")
    assert "run_now_selected" in client.get(schedule_url("changelist")).content.decode()
    response = act(client, "run_now_selected", schedule)
    assert "1 run started." in response.content.decode()
    tick = schedule.tick_rows.get()
    assert tick.outcome == Outcome.RUN and tick.note == "Run by hand."
    assert tick.task is not None and tick.task.status == Status.SCHEDULED
    # Its run is still scheduled: a second click starts nothing.
    response = act(client, "run_now_selected", schedule)
    assert "1 was already scheduled or running." in response.content.decode()
    assert schedule.tick_rows.count() == 1 and Task.objects.count() == 1


def test_run_now_of_a_django_task_enqueues_it_with_its_arguments(admin_client):
    schedule = make_schedule(task_name=ADD, arguments={"args": [2, 3]})
    act(admin_client, "run_now_selected", schedule)
    task = schedule.tick_rows.get().task
    assert task is not None and task.name == ADD and task.status == Status.SCHEDULED


def test_run_now_says_why_it_could_not_run(admin_client):
    schedule = make_schedule(task_name="tests.tasks.no_such_task")
    html = act(admin_client, "run_now_selected", schedule).content.decode()
    assert "Could not run: nightly (No @task is registered" in html
    assert not ScheduleTick.objects.exists()


def test_run_now_needs_the_run_permission():
    schedule = make_schedule()
    client = staff("djangotasks.view_schedule", "djangotasks.change_schedule")
    assert "run_now_selected" not in client.get(schedule_url("changelist")).content.decode()
    act(client, "run_now_selected", schedule)
    assert not Task.objects.exists()


# -- elsewhere: the task's page, the dashboard ----------------------------------------------


def test_the_task_page_names_its_schedule(admin_client, django_assert_max_num_queries):
    schedule = make_schedule("<i>nightly</i>")
    task = scheduler.run_now(schedule)
    html = admin_client.get(url("change", task.pk)).content.decode()
    link = f'<a href="{schedule_url("change", schedule.pk)}">&lt;i&gt;nightly&lt;/i&gt;</a>'
    assert f"Run by schedule {link} for the tick of " in html
    assert "Run by hand." in html
    # Without the permission to see schedules: the name, not a link.
    client = staff("djangotasks.view_task")
    html = client.get(url("change", task.pk)).content.decode()
    assert "Run by schedule &lt;i&gt;nightly&lt;/i&gt; for the tick of" in html
    # A task no schedule made says nothing of schedules.
    other = make_task(None, "tests.tasks.slow_tick")
    assert "Run by schedule" not in admin_client.get(url("change", other.pk)).content.decode()


def test_dashboard_shows_the_next_runs(admin_client, django_assert_max_num_queries):
    make_schedule("<b>often</b>", cron="* * * * *")
    make_schedule("seven", cron="", interval=timedelta(minutes=7))
    make_schedule("nightly")  # not in the next ten
    make_schedule("paused", cron="", interval=timedelta(seconds=1), enabled=False)
    html = admin_client.get(url("dashboard")).content.decode()
    assert "Next runs" in html and 'hx-get="' + url("dashboard_live") + '?part=schedules"' in html
    part = html.split('id="djangotasks-next-runs-title"')[1].split("</section>")[0]
    assert part.count("<tr>") == 11  # ten runs and the header
    assert part.count("&lt;b&gt;often&lt;/b&gt;") >= 8 and "paused" not in part
    assert schedule_url("change", Schedule.objects.get(name="seven").pk) in part
    assert "nightly" not in part
    with django_assert_max_num_queries(6):
        fragment = admin_client.get(url("dashboard_live") + "?part=schedules")
    assert fragment.status_code == 200 and "Every tick" in fragment.content.decode()


def test_dashboard_next_runs_need_the_view_schedule_permission():
    make_schedule()
    viewer = staff("djangotasks.view_task")
    html = viewer.get(url("dashboard")).content.decode()
    assert "Next runs" not in html and "part=schedules" not in html
    User.objects.all().delete()
    viewer = staff("djangotasks.view_task", "djangotasks.view_schedule")
    assert "Next runs" in viewer.get(url("dashboard")).content.decode()
