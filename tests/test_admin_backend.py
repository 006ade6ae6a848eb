"""The admin and ``manage.py tasks`` with tasks of Django's tasks framework (Django >= 6.0, or
the django-tasks backport on 5.2).

Results are run by real daemons; the admin is driven through Django's test client.
"""

from __future__ import annotations

import html
import json
import re
from io import StringIO

import pytest

pytest.importorskip(
    "djangotasks.tasks_framework",
    reason="Django's tasks framework: Django >= 6.0, or the django-tasks backport",
    exc_type=ImportError,
)

from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils.html import escape

from djangotasks import backend as process_backend
from djangotasks.models import Task
from djangotasks.statuses import Status
from djangotasks.tasks_framework import TaskResultStatus
from tests import backend_tasks as tasks
from tests.helpers import wait_until
from tests.models import Job
from tests.test_admin import staff, url

FINISHED = {TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED}
# The test settings' TASKS, less the "reports" queue: what a project that dropped it has.
WITHOUT_REPORTS = {
    "default": {"BACKEND": "djangotasks.backend.ProcessBackend", "QUEUES": ["default"]},
}


def wait_result(result, statuses=FINISHED):
    def reached():
        result.refresh()
        return result.status in statuses

    wait_until(reached)
    return result


def row_of(result) -> Task:
    return process_backend.task_of(result)


def command(*args: str) -> str:
    out = StringIO()
    call_command("tasks", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def shown_json(page: str, field: str) -> object:
    """The JSON value shown in a field of a task's page (escaped there)."""
    match = re.search(rf'field-{field}.*?<pre class="djangotasks-value ">(.*?)</pre>', page, re.S)
    assert match, field
    assert "\n" not in match[1], "short enough for one line"
    return json.loads(html.unescape(match[1]))


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# -- finished results: the list, the page, the command ---------------------------------------


def test_a_successful_result_in_the_list_on_its_page_and_in_tasks_show(admin_client, daemon):
    result = wait_result(tasks.build_report.enqueue(42, full=True))
    assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
    row = row_of(result)

    listing = admin_client.get(url("changelist")).content.decode()
    assert "Build report" in listing
    assert "(42, full=True)" in listing  # the arguments, where an object would be
    assert f'title="result {result.id}"' in listing
    assert '<td class="field-queue_name">reports</td>' in listing
    assert "object #" not in listing

    page = admin_client.get(url("change", row.pk)).content.decode()
    assert f"#{row.pk} Build report · result {result.id[:8]}" in page  # the subtitle
    assert "Call and result" in page
    assert f"<code>{result.id}</code>" in page
    assert "<code>tests.backend_tasks.build_report(42, full=True)</code>" in page
    # Arguments and return value as JSON (PostgreSQL orders keys its own way), on one line.
    assert shown_json(page, "arguments_column") == {"args": [42], "kwargs": {"full": True}}
    assert shown_json(page, "return_value_column") == result.return_value
    assert "field-error_column" not in page
    for field, value in [("queue_name", "reports"), ("priority", "10"), ("attempt", "1")]:
        assert f'<div class="readonly">{value}</div>' in page.split(f"field-{field}")[1], field
    assert "building report 42" in page  # the log
    assert f'action="{url("again", row.pk)}"' in page  # "Run again" enqueues this result's call
    assert "Dependencies" not in page and "This is the result's first attempt." in page

    shown = command("show", str(row.pk))
    assert f"result: {result.id} (backend default)" in shown
    assert "call: build_report(42, full=True)" in shown
    assert "queue: reports" in shown and "priority: 10" in shown
    assert 'arguments: {"args": [42], "kwargs": {"full": true}}' in shown
    [value] = [line for line in shown.splitlines() if line.startswith("return value: ")]
    assert json.loads(value.removeprefix("return value: ")) == result.return_value
    assert shown.endswith("building report 42\n")


def test_a_failed_result_shows_its_error_and_escaped_traceback(admin_client, daemon):
    message = "<script>alert(1)</script>, in a message too long for one line"
    result = wait_result(tasks.fail.enqueue(message))
    assert result.status == TaskResultStatus.FAILED
    row = row_of(result)

    page = admin_client.get(url("change", row.pk)).content.decode()
    assert '<code class="djangotasks-error-class">builtins.ValueError</code>' in page
    assert '<pre class="djangotasks-value djangotasks-traceback">Traceback' in page
    assert "raise ValueError(message)" in page
    assert "ValueError: &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert message not in page
    assert "field-return_value_column" not in page  # it has none
    # Arguments too long for one line are indented.
    assert ">" + escape('{\n  "args": [\n    "<script>') in page

    listing = admin_client.get(url("changelist")).content.decode()
    assert message not in listing
    assert "(&#x27;&lt;script&gt;alert(1)" in listing  # its argument, shortened

    shown = command("show", str(row.pk))
    assert "error: builtins.ValueError" in shown
    assert f"    ValueError: {message}" in shown
    assert "return value" not in shown


# -- queues: the filter, the dashboard, tasks list --queue -------------------------------------


@pytest.mark.django_db(transaction=True)
def test_queue_filter_and_tasks_list_queue(admin_client):
    reports = [tasks.build_report.enqueue(n) for n in (1, 2)]
    default = tasks.add.enqueue(1, 2)

    response = admin_client.get(url("changelist") + "?queue=reports")
    assert response.status_code == 200
    shown = {task.object_id for task in response.context["cl"].result_list}
    assert shown == {result.id for result in reports}
    choices = response.content.decode()
    assert 'href="?queue=default"' in choices and 'href="?queue=reports"' in choices
    # A queue removed from the settings is still filtered by.
    assert admin_client.get(url("changelist") + "?queue=gone").context["cl"].result_list == []

    listed = command("list", "--queue", "reports").splitlines()
    assert len(listed) == 2
    assert all("reports" in line and "build_report(" in line for line in listed)
    assert f"build_report(2)  result {reports[1].id}" in listed[0]
    both = command("list", "--queue", "reports", "--queue", "default")
    assert len(both.splitlines()) == 3 and f"add(1, 2)  result {default.id}" in both
    assert command("list", "--queue", "nowhere") == ""


@pytest.mark.django_db(transaction=True)
def test_dashboard_shows_queue_depths_of_what_the_user_may_see(admin_client):
    tasks.build_report.enqueue(1)
    tasks.report_noop.enqueue()
    tasks.add.enqueue(1, 2)
    Job.objects.create().sleep().run()  # scheduled, default queue, bound to an object

    def depths(client) -> dict[str, int]:
        response = client.get(url("dashboard_live"))
        assert response.status_code == 200
        return {queue.name: queue.depth for queue in response.context["queues"]}

    assert depths(admin_client) == {"default": 2, "reports": 2}
    page = admin_client.get(url("dashboard")).content.decode()
    assert "Queues" in page
    assert "?status__exact=scheduled&amp;queue=reports" in page
    # Someone who may not see jobs does not count their tasks either.
    assert depths(staff("djangotasks.view_task")) == {"default": 1, "reports": 2}


# -- run again and cancel ------------------------------------------------------------------------


def test_run_again_enqueues_the_same_call_as_a_new_result(admin_client, daemon):
    first = wait_result(tasks.add.enqueue(20, 22))
    row = row_of(first)

    response = admin_client.post(
        url("changelist"),
        {"action": "run_selected_again", "_selected_action": [row.pk]},
        follow=True,
    )
    assert "1 task scheduled." in messages_of(response)
    again = Task.objects.filter(name=row.name).exclude(pk=row.pk).get()
    assert again.arguments == row.arguments and again.object_id != row.object_id
    second = wait_result(tasks.add.get_result(again.object_id))
    assert second.return_value == 42

    # The button of the task's page: the new result's page follows.
    response = admin_client.post(url("again", row.pk), {"show": "task"})
    assert response.status_code == 302
    third = Task.objects.filter(name=row.name).exclude(pk__in=[row.pk, again.pk]).get()
    assert response.url == url("change", third.pk)
    assert third.arguments == row.arguments
    assert wait_result(tasks.add.get_result(third.object_id)).return_value == 42
    assert Task.objects.filter(name=row.name).count() == 3, "every result stays"


@pytest.mark.django_db(transaction=True)
def test_refused_enqueues_are_admin_messages_not_errors(admin_client):
    report = row_of(tasks.build_report.enqueue(7))
    gone_backend = row_of(tasks.add.enqueue(1, 1))
    gone_code = row_of(tasks.add.enqueue(2, 2))
    # Finished, then the project changed: the rows as they would be found.
    Task.objects.filter(pk__in=[report.pk, gone_backend.pk, gone_code.pk]).update(
        status=Status.SUCCESSFUL
    )
    Task.objects.filter(pk=gone_backend.pk).update(
        arguments={"args": [1, 1], "kwargs": {}, "backend": "removed"}
    )
    Task.objects.filter(pk=gone_code.pk).update(name="tests.backend_tasks.removed")

    with override_settings(TASKS=WITHOUT_REPORTS):
        response = admin_client.post(
            url("changelist"),
            {"action": "run_selected_again", "_selected_action": [report.pk]},
            follow=True,
        )
        assert response.status_code == 200
        [scheduled, error] = messages_of(response)
        assert scheduled == "0 tasks scheduled."
        assert error == (
            f"Could not run: #{report.pk} Build report · result {report.object_id[:8]} "
            "(Queue 'reports' is not valid for backend.)"
        )
        # The button of its page says so too, on the page it came from.
        page = url("change", report.pk)
        response = admin_client.post(url("again", report.pk), {"next": page}, follow=True)
        assert response.redirect_chain == [(page, 302)]
        assert "could not run again: Queue &#x27;reports&#x27; is not valid" in (
            response.content.decode()
        )

    response = admin_client.post(
        url("changelist"),
        {"action": "run_selected_again", "_selected_action": [gone_backend.pk, gone_code.pk]},
        follow=True,
    )
    [_scheduled, error] = messages_of(response)
    assert "The connection 'removed' doesn't exist." in error
    removed = f"#{gone_code.pk} tests.backend_tasks.removed · result {gone_code.object_id[:8]}"
    assert f"{removed} (no such task any more)" in error
    assert Task.objects.count() == 3, "nothing was enqueued"
    # Its page still shows: the name of the removed code stands for its label.
    assert admin_client.get(url("change", gone_code.pk)).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_django_task_follows_the_function_task_rule_and_never_runs_without_arguments():
    row = row_of(tasks.add.enqueue(1, 2))
    Task.objects.filter(pk=row.pk).update(status=Status.SUCCESSFUL)
    viewer = staff("djangotasks.view_task")
    assert viewer.get(url("change", row.pk)).status_code == 200
    assert viewer.post(url("again", row.pk)).status_code == 403
    User.objects.filter(username="staff").delete()
    runner = staff("djangotasks.view_task", "djangotasks.run_task")
    assert runner.post(url("again", row.pk)).status_code == 302
    assert Task.objects.filter(name=row.name).count() == 2
    # Run by name (no arguments) is no way to run it, in the admin or the terminal.
    assert runner.post(url("run", row.name)).status_code == 404
    with pytest.raises(CommandError, match=r"\.enqueue\("):
        command("run", row.name)
    assert Task.objects.filter(name=row.name).count() == 2


def test_cancel_a_running_django_task_from_the_admin(admin_client, daemon):
    result = tasks.sleeper.enqueue(60)
    wait_result(result, {TaskResultStatus.RUNNING})
    row = row_of(result)
    wait_until(lambda: "sleeping" in row_of(result).log)
    page = admin_client.get(url("change", row.pk)).content.decode()
    assert f'action="{url("cancel", row.pk)}"' in page

    response = admin_client.post(url("cancel", row.pk), {"next": url("change", row.pk)})
    assert response.status_code == 302
    wait_result(result)
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class_path == "djangotasks.exceptions.TaskCancelled"
    assert row_of(result).status == Status.CANCELLED
    page = admin_client.get(url("change", row.pk)).content.decode()
    assert '<code class="djangotasks-error-class">djangotasks.exceptions.TaskCancelled</code>' in (
        page
    )
