"""The Prometheus metrics: scraped over HTTP from a live server while a real daemon runs
tasks that succeed, fail, time out and are cancelled; who may read them; the dashboard's
link; ``taskd status``; the figures' queries."""

from __future__ import annotations

import math
import sys
import urllib.request
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client, override_settings
from django.urls import path
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from djangotasks import checks, metrics, tallies
from djangotasks.models import Task
from djangotasks.statuses import Status
from tests.helpers import staff_user, wait_status, wait_until
from tests.models import Job

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "a-token-for-the-tests"
URL = "/djangotasks/metrics"
# A project that routes the view without its name (ROOT_URLCONF = this module): no link.
urlpatterns = [path("admin/", admin.site.urls), path("elsewhere", metrics.metrics_view)]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def token(settings: Any) -> str:
    settings.DJANGOTASKS = {**settings.DJANGOTASKS, "METRICS_TOKEN": TOKEN}
    return TOKEN


def parse(text: str) -> Samples:
    """Every sample by (name, sorted labels); the text must parse as Prometheus' format."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def scrape(base_url: str) -> Samples:
    request = urllib.request.Request(base_url + URL, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=20) as response:
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
        return parse(response.read().decode())


def finished(samples: Samples, task: str, outcome: str) -> float | None:
    return value(
        samples, "djangotasks_tasks_finished_total", task=f"tests.Job.{task}", outcome=outcome
    )


def test_a_scrape_counts_what_a_running_daemon_did(live_server, start_daemon, token, tmp_path):
    # It serves "default" only: a task on "reports" waits there, due, for nobody.
    start_daemon(queues=["default"])
    ended = [Job.objects.create().hello.run() for _ in range(2)]
    ended += [Job.objects.create().fail.run(), Job.objects.create().too_slow.run()]
    for task in ended:
        wait_status(task)
    started = tmp_path / "started"
    sleeper = Job.objects.create(seconds=120, path=str(started)).sleep.run()
    wait_until(started.exists)
    with transaction.atomic():  # seen by the daemon as they are, after the commit
        later = Job.objects.create().noop.run()
        Task.objects.filter(pk=later.pk).update(run_after=timezone.now() + timedelta(hours=1))
        parked = Job.objects.create().noop.run()
        Task.objects.filter(pk=parked.pk).update(queue_name="reports")

    def counted() -> Samples | None:
        samples = scrape(live_server.url)  # the daemon writes its counts about once a second
        pickups = value(samples, "djangotasks_pickup_delay_seconds_count", queue="default")
        return samples if finished(samples, "too_slow", "timed_out") and pickups == 5 else None

    samples = wait_until(counted)
    assert finished(samples, "hello", "successful") == 2
    assert finished(samples, "fail", "failed") == 1
    assert finished(samples, "too_slow", "timed_out") == 1
    assert finished(samples, "hello", "failed") == 0  # known series are there from the start
    assert finished(samples, "sleep", "cancelled") == 0
    for task, count in (("hello", 2), ("fail", 1), ("too_slow", 1), ("sleep", 0)):
        labels = {"task": f"tests.Job.{task}"}
        assert value(samples, "djangotasks_task_duration_seconds_count", **labels) == count
        assert (
            value(samples, "djangotasks_task_duration_seconds_bucket", le="+Inf", **labels) == count
        )
    # It ran until its timeout of 1 s killed it: not in the first bucket.
    slow = {"task": "tests.Job.too_slow", "le": "1.0"}
    assert value(samples, "djangotasks_task_duration_seconds_bucket", **slow) == 0
    tasks = "djangotasks_tasks"
    assert value(samples, tasks, status="running", queue="default") == 1
    assert value(samples, tasks, status="scheduled", queue="default") == 1  # later
    assert value(samples, tasks, status="scheduled", queue="reports") == 1  # parked
    assert value(samples, tasks, status="requested_cancel", queue="default") == 0
    assert value(samples, "djangotasks_daemons") == 1
    assert value(samples, "djangotasks_daemon_slots", state="busy") == 1
    assert value(samples, "djangotasks_daemon_slots", state="free") == 3
    assert value(samples, "djangotasks_oldest_scheduled_age_seconds", queue="reports") > 0
    # later is not due yet: nothing on "default" could start and has not.
    assert value(samples, "djangotasks_oldest_scheduled_age_seconds", queue="default") == 0
    assert value(samples, "djangotasks_database_outages_total") == 0
    log_bytes = value(samples, "djangotasks_log_bytes")  # none on SQLite: no cheap figure
    assert log_bytes is None if connection.vendor == "sqlite" else log_bytes > 0

    sleeper.cancel()
    later.cancel()  # scheduled: cancelled at once, counted by this process
    assert wait_status(sleeper).status == Status.CANCELLED

    def cancelled() -> Samples | None:
        samples = scrape(live_server.url)
        return samples if finished(samples, "sleep", "cancelled") == 1 else None

    samples = wait_until(cancelled)
    assert finished(samples, "noop", "cancelled") == 1
    assert value(samples, tasks, status="running", queue="default") == 0
    assert value(samples, tasks, status="scheduled", queue="default") == 0
    assert value(samples, "djangotasks_daemon_slots", state="busy") == 0
    assert value(samples, "djangotasks_daemon_slots", state="free") == 4

    # taskd status prints the same figures for a terminal.
    out = StringIO()
    with pytest.raises(SystemExit):  # no daemon of this pid file: "not running"
        call_command("taskd", "status", "--pidfile", str(tmp_path / "none.pid"), stdout=out)
    text = out.getvalue()
    assert "tasks finished: 2 successful, 1 failed, 1 timed_out, 0 lost, 2 cancelled" in text
    assert "tasks live: 1 scheduled, 0 running, 0 requested_cancel" in text
    assert "slots of the daemons alive (1): 0 busy, 4 free" in text
    assert "database outages seen by the daemons: 0" in text


def test_the_token_or_the_view_permission_lets_one_in(client, token):
    anonymous = client.get(URL)
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"].startswith("Bearer")
    assert client.get(URL, headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.get(URL, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 403
    response = client.get(URL, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert response["Cache-Control"] == "no-store"
    assert value(parse(response.content.decode()), "djangotasks_daemons") == 0

    client.force_login(staff_user("nobody"))
    assert client.get(URL).status_code == 403
    viewer = Client()
    viewer.force_login(staff_user("viewer", "view_task"))
    assert viewer.get(URL).status_code == 200
    assert viewer.post(URL).status_code == 405


def test_without_a_token_configured_no_bearer_gets_in(client):
    assert client.get(URL, headers={"Authorization": "Bearer "}).status_code == 403
    assert client.get(URL, headers={"Authorization": "Bearer None"}).status_code == 403


def test_without_prometheus_client_the_view_says_what_to_install(client, token, monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    response = client.get(URL, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 503
    assert "pip install 'djangotasks[metrics]'" in response.content.decode()
    # Credentials first: a stranger learns nothing of the installation.
    assert client.get(URL).status_code == 401


def test_a_check_warns_when_the_route_has_no_prometheus_client(monkeypatch):
    assert checks.check_metrics() == []
    monkeypatch.setattr(metrics, "installed", lambda: False)
    assert [m.id for m in checks.check_metrics()] == ["djangotasks.W003"]
    with override_settings(ROOT_URLCONF=__name__):  # routed without its name: not found
        assert checks.check_metrics() == []


def test_the_dashboard_links_to_the_metrics_where_routed(admin_client):
    link = f'<a href="{URL}">Metrics</a>'
    assert link in admin_client.get("/admin/djangotasks/task/dashboard/").content.decode()
    with override_settings(ROOT_URLCONF=__name__):
        page = admin_client.get("/admin/djangotasks/task/dashboard/")
    assert page.status_code == 200
    assert "Metrics" not in page.content.decode()


def test_the_figures_cost_six_queries_at_most(django_assert_max_num_queries):
    for _ in range(3):
        Job.objects.create().hello.run()
    Job.objects.create().noop.run().cancel()
    with django_assert_max_num_queries(6):  # a seventh would be one per something
        figures = metrics.snapshot()
    assert figures.live[Status.SCHEDULED, "default"] == 3
    assert figures.finished["tests.Job.noop", "cancelled"] == 1


def test_label_values_from_the_database_are_escaped(client, token):
    queue = 'q"} 1\nevil{x="'  # a queue name written into a row by hand
    task = Job.objects.create().hello.run()
    Task.objects.filter(pk=task.pk).update(queue_name=queue)
    response = client.get(URL, headers={"Authorization": f"Bearer {TOKEN}"})
    samples = parse(response.content.decode())
    assert value(samples, "djangotasks_tasks", status="scheduled", queue=queue) == 1
    assert not any(name.startswith("evil") for name, _labels in samples)


def test_histograms_are_cumulated_and_keep_rows_of_other_bounds():
    raw = {"1": 2.0, "10": 1.0, "7": 1.0, tallies.INF: 1.0}  # "7": a bound no longer used
    histogram = metrics._histogram(raw, 42.0, tallies.DURATION_BUCKETS)
    buckets = dict(histogram.buckets)
    assert buckets[1] == 2
    assert buckets[10] == 4
    assert buckets[86400] == 4
    assert buckets[math.inf] == histogram.count == 5
    assert histogram.sum == 42


def test_a_bad_token_setting_is_reported():
    with override_settings(DJANGOTASKS={"METRICS_TOKEN": ""}):
        assert [m.id for m in checks.check_settings()] == ["djangotasks.E001"]
