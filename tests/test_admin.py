"""The admin with Django's test client: pages, permissions, CSRF, escaping, live fragments."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_htmx.http import HTMX_STOP_POLLING

from djangotasks.models import Task, TaskLogChunk, Worker
from djangotasks.models.task import live_key
from djangotasks.statuses import Status
from djangotasks.templatetags.djangotasks_admin import short_date
from tests.models import Job

pytestmark = pytest.mark.django_db


def make_task(
    job: Job | None,
    name: str = "hello",
    status: str = Status.SUCCESSFUL,
    log: str = "",
    archived: bool = False,
    **fields: object,
) -> Task:
    """A fixture row as the daemon would have left it (tests only; the app never does this)."""
    full = f"tests.Job.{name}" if job is not None else name
    object_id = str(job.pk) if job is not None else ""
    now = timezone.now()
    task = Task.objects.create(
        name=full,
        content_type=ContentType.objects.get_for_model(Job) if job is not None else None,
        object_id=object_id,
        live_key=None if archived else live_key(full, object_id),
        archived=archived,
        status=status,
        start_date=fields.pop("start_date", now - timedelta(seconds=90)),
        end_date=fields.pop("end_date", None if status in ("running", "scheduled") else now),
        log_size=len(log),
        **fields,
    )
    if log:
        TaskLogChunk.objects.create(task=task, offset=0, end=len(log), text=log)
    return task


def staff(*perms: str) -> Client:
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    for perm in perms:
        app, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app, codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


def url(name: str, *args: object) -> str:
    return reverse(f"admin:djangotasks_task_{name}", args=args)


def job_url(name: str, *args: object) -> str:
    return reverse(f"admin:tests_job_{name}", args=args)


# -- the task admin ---------------------------------------------------------------------


def test_task_list_shows_badges_progress_target_and_worker(admin_client):
    job = Job.objects.create()
    make_task(
        job,
        "progress",
        Status.RUNNING,
        progress_current=3,
        progress_total=4,
        progress_message="step 3",
    )
    response = admin_client.get(url("changelist"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "djangotasks-status-running" in html
    assert '<progress class="djangotasks-progress" max="4" value="3"' in html
    assert job_url("change", job.pk) in html
    assert url("dashboard") in html


def test_task_list_filters_and_search(admin_client):
    job = Job.objects.create(text="needle")
    make_task(job, "hello", Status.SUCCESSFUL)
    make_task(job, "fail", Status.UNSUCCESSFUL, reason="bad row")
    for query in (
        "status__exact=unsuccessful",
        "name=tests.Job.fail",
        "q=bad+row",
        f"model={ContentType.objects.get_for_model(Job).pk}",
        "archived__exact=0",
    ):
        response = admin_client.get(url("changelist") + "?" + query)
        assert response.status_code == 200, query
        assert response.context["cl"].result_count >= 1, query


def test_task_list_never_counts_the_table_and_has_a_query_budget(
    admin_client, django_assert_max_num_queries
):
    jobs = Job.objects.bulk_create([Job() for _ in range(30)])
    Task.objects.bulk_create(
        [
            Task(
                name="tests.Job.hello",
                content_type=ContentType.objects.get_for_model(Job),
                object_id=str(jobs[i % 30].pk),
                archived=True,
                status=Status.SUCCESSFUL,
            )
            for i in range(700)
        ]
    )
    admin_client.get(url("changelist"))  # warm caches (content types, session)
    with django_assert_max_num_queries(12) as captured:
        response = admin_client.get(url("changelist"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "500+ tasks" in html
    # Five pages ahead, not the total (the link's attributes differ between Django versions).
    assert re.search(r'<a [^>]*href="\?p=6"[^>]*>6</a>', html)
    counts = [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts and all("LIMIT" in sql.upper() for sql in counts), counts
    # Page 7 is reachable too, counted from there.
    assert admin_client.get(url("changelist") + "?p=7").status_code == 200


def test_task_page_is_read_only_and_shows_log_tree_and_archives(admin_client):
    job = Job.objects.create()
    one = make_task(job, "step_one", Status.SUCCESSFUL, log="one done\n")
    old = make_task(job, "step_two", Status.UNSUCCESSFUL, archived=True, reason="first try")
    two = make_task(job, "step_two", Status.RUNNING, log="<script>alert(1)</script>\n")
    two.dependencies.add(one)
    response = admin_client.get(url("change", two.pk))
    html = response.content.decode()
    assert response.status_code == 200
    assert 'name="_save"' not in html  # nothing to edit
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)" not in html
    assert f"{url('log', two.pk)}?offset=" in html  # the live log polls
    assert f"#{one.pk} Step one" in html  # dependency tree
    assert url("change", old.pk) in html  # earlier run
    assert admin_client.post(url("change", two.pk), {"status": "successful"}).status_code == 403
    two.refresh_from_db()
    assert two.status == Status.RUNNING


def test_log_fragment_appends_escaped_text_and_stops_polling_at_the_end(admin_client):
    job = Job.objects.create()
    task = make_task(job, "hello", Status.RUNNING, log="line 1\n<b>bold</b>\n")
    response = admin_client.get(url("log", task.pk) + "?offset=7", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200
    assert f'hx-swap-oob="beforeend:#djangotasks-log-{task.pk}">&lt;b&gt;bold&lt;/b&gt;' in html
    assert f"{url('log', task.pk)}?offset=19" in html
    Task.objects.filter(pk=task.pk).update(status=Status.SUCCESSFUL)
    response = admin_client.get(url("log", task.pk) + "?offset=19")
    assert response.status_code == HTMX_STOP_POLLING
    assert "hx-get" not in response.content.decode()
    assert admin_client.get(url("log", task.pk) + "?offset=x").status_code == 400


def test_head_fragment_stops_polling_when_finished(admin_client):
    task = make_task(Job.objects.create(), "sleep", Status.RUNNING)
    assert admin_client.get(url("head", task.pk)).status_code == 200
    Task.objects.filter(pk=task.pk).update(status=Status.CANCELLED)
    assert admin_client.get(url("head", task.pk)).status_code == HTMX_STOP_POLLING


def test_full_log_is_plain_text(admin_client):
    task = make_task(Job.objects.create(), log="<script>x</script>\n")
    response = admin_client.get(url("log_text", task.pk))
    assert response["Content-Type"].startswith("text/plain")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"".join(response.streaming_content) == b"<script>x</script>\n"


def test_cancel_and_run_again_actions(admin_client):
    job = Job.objects.create()
    scheduled = Job.objects.create().sleep().run()
    done = make_task(job, "hello", Status.SUCCESSFUL)
    response = admin_client.post(
        url("changelist"),
        {"action": "cancel_selected", "_selected_action": [scheduled.pk, done.pk]},
        follow=True,
    )
    assert "1 task cancelled. 1 was not running or scheduled." in response.content.decode()
    scheduled.refresh_from_db()
    assert scheduled.status == Status.CANCELLED
    response = admin_client.post(
        url("changelist"),
        {"action": "run_selected_again", "_selected_action": [done.pk]},
        follow=True,
    )
    assert "1 task scheduled." in response.content.decode()
    assert job.hello().status == Status.SCHEDULED
    done.refresh_from_db()
    assert done.archived


def test_running_tasks_are_not_deleted(admin_client):
    running = make_task(Job.objects.create(), "sleep", Status.RUNNING)
    finished = make_task(Job.objects.create(), "hello", Status.SUCCESSFUL)
    admin_client.post(
        url("changelist"),
        {"action": "delete_selected", "post": "yes", "_selected_action": [running.pk, finished.pk]},
    )
    # Django refuses the whole deletion (the running task's row is protected) ...
    assert set(Task.objects.values_list("pk", flat=True)) == {running.pk, finished.pk}
    admin_client.post(
        url("changelist"),
        {"action": "delete_selected", "post": "yes", "_selected_action": [finished.pk]},
    )
    # ... and deletes what is finished.
    assert list(Task.objects.values_list("pk", flat=True)) == [running.pk]


# -- TaskAdminMixin ---------------------------------------------------------------------


def test_generated_actions_schedule_and_report_what_already_runs(admin_client):
    jobs = [Job.objects.create() for _ in range(3)]
    jobs[0].sleep().run()
    response = admin_client.get(job_url("changelist"))
    html = response.content.decode()
    assert '<option value="run_task_hello">Run say hello</option>' in html
    assert '<option value="run_task_step_three">Run step three</option>' in html
    response = admin_client.post(
        job_url("changelist"),
        {"action": "run_task_sleep", "_selected_action": [j.pk for j in jobs]},
        follow=True,
    )
    html = response.content.decode()
    assert "Sleep scheduled for 2 jobs." in html
    assert f"Sleep was already scheduled or running for: job {jobs[0].pk}." in html
    assert all(j.sleep().status == Status.SCHEDULED for j in jobs)


def test_change_list_column_has_status_and_buttons(admin_client, django_assert_max_num_queries):
    jobs = [Job.objects.create() for _ in range(20)]
    jobs[0].sleep().run()
    admin_client.get(job_url("changelist"))
    with django_assert_max_num_queries(10):
        response = admin_client.get(job_url("changelist"))
    html = response.content.decode()
    ct = ContentType.objects.get_for_model(Job).pk
    assert f'formaction="{url("run_object", "tests.Job.hello", ct, jobs[1].pk)}"' in html
    assert f'formaction="{url("cancel", jobs[0].sleep().pk)}"' in html


def test_change_form_has_a_live_panel(admin_client):
    job = Job.objects.create()
    make_task(job, "hello", Status.SUCCESSFUL, log="hi <i>there</i>\n")
    make_task(job, "hello", Status.UNSUCCESSFUL, archived=True)
    running = make_task(job, "sleep", Status.RUNNING, log="sleeping\n")
    response = admin_client.get(job_url("change", job.pk))
    html = response.content.decode()
    assert 'id="djangotasks-panel"' in html
    assert "django_htmx/htmx-2.min.js" in html
    assert "djangotasks/djangotasks.js" in html
    assert "hi &lt;i&gt;there&lt;/i&gt;" in html
    assert "1 earlier run" in html
    assert f"{url('log', running.pk)}?offset=9" in html
    assert f"{url('head', running.pk)}?in=panel" in html
    assert '"X-CSRFToken": "' in html
    assert "<script>" not in html.replace("<script src=", "")  # no inline scripts


def test_panel_says_never_run_rather_than_empty_dates(admin_client):
    job = Job.objects.create()
    make_task(job, "hello", Status.CANCELLED, start_date=None, end_date=None)
    html = admin_client.get(job_url("change", job.pk)).content.decode()
    card = html[html.index('id="djangotasks-task-tests-Job-sleep"') :]
    assert "Never run" in card[: card.index("</article>")]
    card = html[html.index('id="djangotasks-task-tests-Job-hello"') :]
    assert "Never started" in card[: card.index("</article>")]
    assert "Started —" not in html


def test_short_date_fits_a_column_and_keeps_the_full_date_in_its_title():
    now = timezone.localtime()
    today = short_date(now)
    assert f">{now:%H:%M}</time>" in today
    assert f'datetime="{now.isoformat()}"' in today
    earlier = now.replace(month=1 if now.month > 1 else 2, day=1)
    assert f">{earlier:1 %b %H:%M}</time>".replace(" ", "\xa0", 1) in short_date(earlier)
    last_year = now.replace(year=now.year - 1, day=1)
    assert f"{last_year:%b %Y}<" in short_date(last_year)
    assert short_date(None) == "—"


def test_task_list_columns_are_compact(admin_client):
    job = Job.objects.create()
    task = make_task(job, "hello", Status.SUCCESSFUL)
    html = admin_client.get(url("changelist")).content.decode()
    # The task label links to the task, with its id; the start is a <time> with a title.
    link = f'href="{url("change", task.pk)}">Say hello <span class="djangotasks-id">#{task.pk}'
    assert link in html
    assert '<td class="field-start_column"><time datetime=' in html
    assert "column-id" not in html


def test_run_from_the_panel_with_htmx_returns_the_panel(admin_client):
    job = Job.objects.create()
    ct = ContentType.objects.get_for_model(Job).pk
    run = url("run_object", "tests.Job.step_three", ct, job.pk)
    response = admin_client.post(run, {"panel": "1"}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="djangotasks-panel"')
    assert "Step three scheduled." in html
    assert job.step_one().status == Status.SCHEDULED  # its dependencies too
    # Without JavaScript the same form redirects back with a message.
    response = admin_client.post(run, {"next": job_url("change", job.pk)})
    assert response.status_code == 302
    assert response["Location"] == job_url("change", job.pk)
    response = admin_client.post(
        url("cancel", job.step_three().pk), {"panel": "1"}, HTTP_HX_REQUEST="true"
    )
    assert "Cancelled" in response.content.decode()
    response = admin_client.post(
        url("cancel", job.step_three().pk), {"panel": "1"}, HTTP_HX_REQUEST="true"
    )
    assert "already finished" in response.content.decode()


def test_panel_fragment(admin_client):
    job = Job.objects.create()
    ct = ContentType.objects.get_for_model(Job).pk
    response = admin_client.get(url("panel", ct, job.pk))
    assert response.status_code == 200
    assert "Say hello" in response.content.decode()
    assert admin_client.get(url("panel", ct, 999999)).status_code == 404


# -- permissions and CSRF ---------------------------------------------------------------


def test_state_changes_are_posts_with_csrf():
    job = Job.objects.create()
    ct = ContentType.objects.get_for_model(Job).pk
    user = User.objects.create_superuser("root", password="pw")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    run = url("run_object", "tests.Job.hello", ct, job.pk)
    assert client.get(run).status_code == 405
    assert client.post(run).status_code == 403  # no CSRF token
    assert job.hello().pk is None
    client.get(job_url("change", job.pk))
    token = client.cookies["csrftoken"].value
    assert client.post(run, HTTP_X_CSRFTOKEN=token).status_code == 302  # hx-headers' way
    assert job.hello().status == Status.SCHEDULED


def test_view_run_and_cancel_are_separate_permissions():
    job = Job.objects.create()
    ct = ContentType.objects.get_for_model(Job).pk
    task = job.sleep().run()
    client = staff("tests.view_job")
    assert client.get(url("change", task.pk)).status_code == 403
    assert client.get(url("log", task.pk)).status_code == 403
    assert client.get(url("dashboard")).status_code == 403
    html = client.get(job_url("change", job.pk)).content.decode()
    assert "djangotasks-panel" not in html
    assert "run_task_hello" not in client.get(job_url("changelist")).content.decode()

    User.objects.filter(username="staff").delete()
    client = staff("tests.view_job", "djangotasks.view_task")
    assert client.get(url("change", task.pk)).status_code == 200
    html = client.get(job_url("change", job.pk)).content.decode()
    assert "djangotasks-panel" in html and "djangotasks-run" not in html
    assert client.post(url("run_object", "tests.Job.hello", ct, job.pk)).status_code == 403
    assert client.post(url("cancel", task.pk)).status_code == 403
    assert "run_task_hello" not in client.get(job_url("changelist")).content.decode()

    # Running and cancelling change data: view permission on the object is not enough.
    User.objects.filter(username="staff").delete()
    client = staff("tests.view_job", "djangotasks.view_task", "djangotasks.run_task")
    assert "run_task_hello" not in client.get(job_url("changelist")).content.decode()
    assert client.post(url("run_object", "tests.Job.hello", ct, job.pk)).status_code == 403

    User.objects.filter(username="staff").delete()
    client = staff("tests.change_job", "djangotasks.view_task", "djangotasks.run_task")
    assert "run_task_hello" in client.get(job_url("changelist")).content.decode()
    assert client.post(url("run_object", "tests.Job.hello", ct, job.pk)).status_code == 302
    assert client.post(url("cancel", task.pk)).status_code == 403

    User.objects.filter(username="staff").delete()
    client = staff("tests.view_job", "djangotasks.view_task", "djangotasks.cancel_task")
    assert client.post(url("cancel", task.pk)).status_code == 403
    User.objects.filter(username="staff").delete()
    client = staff("tests.change_job", "djangotasks.view_task", "djangotasks.cancel_task")
    assert client.post(url("cancel", task.pk)).status_code == 302
    task.refresh_from_db()
    assert task.status == Status.CANCELLED


def test_tasks_of_objects_the_user_may_not_view_are_hidden():
    task = Job.objects.create().sleep().run()
    function_task = make_task(None, "tests.tasks.nightly_cleanup", Status.SUCCESSFUL)
    client = staff("djangotasks.view_task", "djangotasks.run_task", "djangotasks.cancel_task")
    response = client.get(url("changelist"))
    shown = [t.pk for t in response.context["cl"].result_list]
    assert shown == [function_task.pk]
    assert client.get(url("change", task.pk)).status_code in (302, 403, 404)
    assert client.get(url("log", task.pk)).status_code == 404
    assert client.post(url("cancel", task.pk)).status_code == 404
    assert client.post(url("run", "tests.tasks.nightly_cleanup")).status_code == 302


# -- the dashboard ----------------------------------------------------------------------


def test_dashboard(admin_client, django_assert_max_num_queries):
    job = Job.objects.create()
    make_task(job, "progress", Status.RUNNING, progress_current=1, progress_total=2)
    make_task(
        job,
        "fail",
        Status.UNSUCCESSFUL,
        log="about to fail\n<script>boom</script>\n",
        reason="ValueError: bad row",
    )
    make_task(job, "hello", Status.SUCCESSFUL)
    index = admin_client.get(reverse("admin:index")).content.decode()
    response_ok = admin_client.get(url("dashboard"))
    html = response_ok.content.decode()
    assert response_ok.status_code == 200
    assert "Running now" in html and "<svg" in html
    assert "&lt;script&gt;boom&lt;/script&gt;" in html
    assert "No daemon is running" in html
    assert f'hx-get="{url("dashboard_live")}"' in html
    with django_assert_max_num_queries(25):
        assert admin_client.get(url("dashboard_live")).status_code == 200
    with django_assert_max_num_queries(25):
        assert admin_client.get(url("dashboard_live") + "?part=charts").status_code == 200
    # tests.settings lists djangotasks after django.contrib.admin: the entry is there anyway.
    entry = reverse("admin:djangotasks_dashboard_changelist")
    assert f'<a href="{entry}"' in index
    assert admin_client.get(entry).url == url("dashboard")


def test_dashboard_entry_needs_the_view_task_permission():
    entry = reverse("admin:djangotasks_dashboard_changelist")
    viewer = staff("djangotasks.view_task")
    assert f'<a href="{entry}"' in viewer.get(reverse("admin:index")).content.decode()
    assert viewer.get(entry).url == url("dashboard")
    assert viewer.get(url("dashboard")).status_code == 200
    User.objects.all().delete()
    outsider = staff("tests.view_job")
    assert f'<a href="{entry}"' not in outsider.get(reverse("admin:index")).content.decode()
    assert outsider.get(entry).status_code == 403
    assert outsider.get(url("dashboard")).status_code == 403


def test_worker_list_tells_machines_and_pid_namespaces_apart(admin_client):
    # Containers share host names and pids: the list shows which machine and pid namespace
    # each daemon ran in, short, with the whole key in the title.
    key = "2724710f-3b18-48a8-9482-cf92a88bd96b/4:4026531836"
    Worker.objects.create(hostname="web", pid=1, host_key=key)
    Worker.objects.create(hostname="web", pid=1, host_key="")

    page = admin_client.get(reverse("admin:djangotasks_worker_changelist")).content.decode()

    assert f'<td class="field-machine"><span title="{key}">2724710f/4026531836</span></td>' in page
    assert '<td class="field-machine">—</td>' in page  # the row whose machine is unknown
