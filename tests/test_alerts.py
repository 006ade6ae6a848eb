"""Failure alerts: grouped ``mail_admins`` mails about tasks that failed, timed out or were lost.

Most tests end real tasks in this process (claimed by a Worker row, ended through
``transitions.finish`` and ``recovery.end_lost``, which send the real signal after the
commit) while this thread plays the daemon's part: it buffers alerts, and the test says when
the window closes. The last one has a real daemon mail a failure to files.
"""

from __future__ import annotations

import email
import email.policy
import logging
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import django
import pytest
from django.core.exceptions import ImproperlyConfigured

from djangotasks import alerts, conf, signals
from djangotasks.exceptions import TaskTimedOut
from djangotasks.models import Task, Worker, recovery
from djangotasks.models.claiming import claim
from djangotasks.models.transitions import error_record, finish
from djangotasks.statuses import Status
from tests.helpers import free_port, wait_status, wait_until
from tests.models import Fault, Job
from tests.tasks import nightly_cleanup

pytestmark = pytest.mark.django_db

# Django 6 takes addresses; 5.2 takes (name, address) pairs.
ADMINS = ["ops@example.com"] if django.VERSION >= (6, 0) else [("Ops", "ops@example.com")]
HOST = socket.gethostname()
# Django's EMAIL_SUBJECT_PREFIX (its default), then ours.
PREFIX = "[Django] [djangotasks] "
# A URLconf without the admin (ROOT_URLCONF = __name__): mails go without admin links.
urlpatterns: list[Any] = []


@pytest.fixture
def alerting(settings: Any) -> None:
    settings.ADMINS = ADMINS
    settings.DJANGOTASKS = {**settings.DJANGOTASKS, "ALERT_MAIL_ADMINS": True}


@pytest.fixture
def daemon_thread() -> Iterator[None]:
    """This thread buffers alerts as a daemon's does."""
    alerts.buffer()
    yield
    alerts.close()


@pytest.fixture
def commits(django_capture_on_commit_callbacks: Any) -> Callable[[], Any]:
    """``with commits():`` runs what waits for the commit (the signals) at the block's end."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def logged() -> Iterator[list[logging.LogRecord]]:
    """What the djangotasks logger says (it does not propagate to pytest's handler)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("djangotasks")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def running(tasks: list[Task]) -> tuple[Worker, list[Task]]:
    """Claim the scheduled ``tasks`` for a new worker, as a daemon would."""
    worker = Worker.objects.create(hostname="test", pid=1)
    claimed = claim(worker, len(tasks))
    assert sorted(t.pk for t in claimed) == sorted(t.pk for t in tasks)
    return worker, sorted(claimed, key=lambda t: t.pk)


def failing_jobs(n: int) -> tuple[Worker, list[Task]]:
    return running(Job.fail.run_for([Job.objects.create() for _ in range(n)]))


def fail(task: Task, worker: Worker, reason: str = "") -> None:
    assert finish(task, worker, Status.UNSUCCESSFUL, reason or f"ValueError: bad {task.pk}")


def mail_now() -> None:
    """Close the window: whatever is pending is due."""
    due = alerts.due_at()
    if due is not None:
        alerts.send_due(due)


def test_a_burst_of_100_failures_is_one_mail_that_lists_them(
    alerting: None, daemon_thread: None, mailoutbox: list[Any], commits: Callable[[], Any]
) -> None:
    worker, tasks = failing_jobs(100)
    with commits():
        for task in tasks:
            fail(task, worker, f"ValueError: bad row in job {task.object_id}\nTraceback ...")

    due = alerts.due_at()
    assert due is not None
    alerts.send_due(due - 0.001)
    assert mailoutbox == []  # the window is still open
    alerts.send_due(due)
    [mail] = mailoutbox
    assert mail.subject == f"{PREFIX}100 tasks failed on {HOST}"
    assert mail.to == ["ops@example.com"]
    listed = tasks[: alerts.MAX_LISTED]
    for task in listed:
        assert (
            f"#{task.pk} failed: Fail of job #{task.object_id}\n"
            f"    ValueError: bad row in job {task.object_id}\n"
            f"    /admin/djangotasks/task/{task.pk}/change/\n"
        ) in mail.body
    assert not any(f"#{task.pk} failed" in mail.body for task in tasks[alerts.MAX_LISTED :])
    assert "\n... and 50 more.\n" in mail.body
    assert "Traceback" not in mail.body  # the reason's first line only

    # The window is closed: nothing more until the next failure, which opens another.
    assert alerts.due_at() is None
    alerts.send_due(due + 3600)
    assert len(mailoutbox) == 1


def test_the_next_failure_after_a_mail_opens_a_new_window(
    alerting: None, daemon_thread: None, mailoutbox: list[Any], commits: Callable[[], Any]
) -> None:
    worker, (first, second) = failing_jobs(2)
    with commits():
        fail(first, worker)
    mail_now()
    with commits():
        fail(second, worker)
    assert alerts.due_at() is not None
    mail_now()
    assert [m.subject for m in mailoutbox] == [
        f"{PREFIX}Task #{first.pk} failed on {HOST}",
        f"{PREFIX}Task #{second.pk} failed on {HOST}",
    ]


@pytest.mark.parametrize("missing", ["the setting", "ADMINS"])
def test_nothing_is_mailed_without_the_setting_or_without_admins(
    settings: Any,
    daemon_thread: None,
    mailoutbox: list[Any],
    commits: Callable[[], Any],
    missing: str,
) -> None:
    settings.ADMINS = [] if missing == "ADMINS" else ADMINS
    if missing == "ADMINS":
        settings.DJANGOTASKS = {**settings.DJANGOTASKS, "ALERT_MAIL_ADMINS": True}
    worker, tasks = failing_jobs(3)
    with commits():
        for task in tasks:
            fail(task, worker)
    assert alerts.due_at() is None
    alerts.close()
    assert mailoutbox == []


def test_alerts_switched_off_before_the_window_closes_are_not_mailed(
    settings: Any,
    alerting: None,
    daemon_thread: None,
    mailoutbox: list[Any],
    commits: Callable[[], Any],
) -> None:
    worker, [task] = failing_jobs(1)
    with commits():
        fail(task, worker)
    assert alerts.due_at() is not None
    settings.ADMINS = []  # checked again when mailing
    mail_now()
    assert mailoutbox == []
    assert alerts.due_at() is None


def test_a_daemon_says_once_that_it_has_nobody_to_mail(
    settings: Any, logged: list[logging.LogRecord]
) -> None:
    settings.DJANGOTASKS = {**settings.DJANGOTASKS, "ALERT_MAIL_ADMINS": True}
    settings.ADMINS = []
    alerts.buffer()
    alerts.close()
    assert [r.getMessage() for r in logged] == [
        "taskd: ALERT_MAIL_ADMINS is on but ADMINS is empty: no alert is mailed"
    ]


def test_successes_and_cancels_mail_nothing(
    alerting: None, daemon_thread: None, mailoutbox: list[Any], commits: Callable[[], Any]
) -> None:
    jobs = [Job.objects.create() for _ in range(4)]
    with commits():
        never_started = jobs[0].hello().run()
        never_started.cancel()  # scheduled: cancelled at once
        worker, (succeeds, cancelled, lost_while_cancelled) = running(Job.hello.run_for(jobs[1:]))
        assert finish(succeeds, worker, Status.SUCCESSFUL)
        cancelled.cancel()
        assert finish(cancelled, worker, Status.CANCELLED, "Cancelled.")
        lost_while_cancelled.cancel()
        assert recovery.end_lost(lost_while_cancelled, "Worker lost: test:1 is gone.")
    lost_while_cancelled.refresh_from_db()
    assert lost_while_cancelled.status == Status.CANCELLED
    assert alerts.due_at() is None
    alerts.close()
    assert mailoutbox == []


def test_a_timed_out_and_a_lost_task_are_named_as_such(
    alerting: None, daemon_thread: None, mailoutbox: list[Any], commits: Callable[[], Any]
) -> None:
    worker, [too_slow, lost, failed] = failing_jobs(3)
    timeout = "Timed out after 1 s."
    with commits():
        finish(
            too_slow,
            worker,
            Status.UNSUCCESSFUL,
            timeout,
            error=error_record(TaskTimedOut, timeout),
        )
    mail_now()
    with commits():
        recovery.end_lost(lost, "Worker lost: test:1 stopped sending heartbeats (silent for 31 s).")
        fail(failed, worker, "ValueError: bad row")
    mail_now()

    alone, together = mailoutbox
    assert alone.subject == f"{PREFIX}Task #{too_slow.pk} timed out on {HOST}"
    assert (
        f"#{too_slow.pk} timed out: Fail of job #{too_slow.object_id}\n    {timeout}\n"
        in alone.body
    )
    assert together.subject == f"{PREFIX}2 tasks ended badly (1 failed, 1 lost) on {HOST}"
    assert (
        f"#{lost.pk} lost: Fail of job #{lost.object_id}\n"
        "    Worker lost: test:1 stopped sending heartbeats (silent for 31 s).\n"
    ) in together.body
    assert f"#{failed.pk} failed: Fail of job #{failed.object_id}\n" in together.body


def test_a_failed_attempt_that_is_retried_is_not_mailed_the_last_one_is(
    alerting: None, daemon_thread: None, mailoutbox: list[Any], commits: Callable[[], Any]
) -> None:
    worker, [first] = running([Fault.objects.create().hopeless().run()])  # retries=1
    with commits():
        fail(first, worker, "RuntimeError: attempt 1 failed")
    assert alerts.due_at() is None
    retry = Task.objects.get(name=first.name, archived=False)
    Task.objects.filter(pk=retry.pk).update(run_after=None)  # due now, not after its delay
    worker, [retry] = running([retry])
    with commits():
        fail(retry, worker, "RuntimeError: attempt 2 failed")
    mail_now()
    [mail] = mailoutbox
    assert mail.subject == f"{PREFIX}Task #{retry.pk} failed on {HOST}"
    assert "RuntimeError: attempt 2 failed" in mail.body


def test_one_alert_per_task_and_outcome(
    alerting: None, daemon_thread: None, mailoutbox: list[Any], commits: Callable[[], Any]
) -> None:
    worker, [task] = failing_jobs(1)
    with commits():
        fail(task, worker)
    for _ in range(2):  # the same end announced again, by mistake
        signals.task_status_changed.send(
            Task, task=task, old_status=Status.RUNNING, new_status=Status.UNSUCCESSFUL
        )
    mail_now()
    [mail] = mailoutbox
    assert mail.subject == f"{PREFIX}Task #{task.pk} failed on {HOST}"
    assert mail.body.count(f"\n#{task.pk} failed: ") == 1


def test_outside_a_daemons_thread_nothing_is_mailed(
    alerting: None, mailoutbox: list[Any], commits: Callable[[], Any]
) -> None:
    # The one way a task ends badly outside a daemon: its dependency is cancelled (or
    # deleted) by the caller. Mailing each at once would be a storm for a task with many.
    job = Job.objects.create()
    with commits():
        dependent = job.step_two().run()
        job.step_one().cancel()
    dependent.refresh_from_db()
    assert dependent.status == Status.UNSUCCESSFUL
    assert alerts.due_at() is None
    assert mailoutbox == []


def test_only_the_buffering_thread_collects(
    alerting: None, daemon_thread: None, mailoutbox: list[Any]
) -> None:
    # Thread mode: a web thread's receiver runs beside the daemon's thread and leaves its
    # buffer alone (the end is announced there without a commit here: no signal in this one).
    worker, [task] = failing_jobs(1)
    fail(task, worker)
    web = threading.Thread(
        target=signals.task_status_changed.send,
        args=(Task,),
        kwargs={"task": task, "old_status": Status.RUNNING, "new_status": Status.UNSUCCESSFUL},
    )
    web.start()
    web.join()
    assert alerts.due_at() is None


def test_untrusted_text_stays_on_its_line_and_is_cut(
    settings: Any,
    alerting: None,
    daemon_thread: None,
    mailoutbox: list[Any],
    commits: Callable[[], Any],
) -> None:
    settings.ROOT_URLCONF = __name__  # no admin here: no links, and the mail goes anyway
    result_id = str(uuid.uuid4())
    rows = [
        Task.objects.create(name="gone.task\r\nBcc: victim@example.com", status=Status.SCHEDULED),
        Task.objects.create(
            name="backend.task",
            object_id=result_id,
            arguments={"args": [], "kwargs": {}},
            status=Status.SCHEDULED,
        ),
        nightly_cleanup().run(),
    ]
    worker, (unknown, django_task, function_task) = running(rows)
    first_line = "  \u202eevil\tvalue\x1b[31m" + "x" * 1000
    evil = f"\n{first_line}\u2028Bcc: victim@example.com\nmore"
    with commits():
        for task in (unknown, django_task, function_task):
            fail(task, worker, evil)
    mail_now()
    [mail] = mailoutbox
    lines = mail.body.splitlines()
    assert not any(line.startswith("Bcc") or "victim" in line for line in lines)
    assert all(len(line) <= 4 + alerts.MAX_LINE for line in lines)
    cut = ("evil value [31m" + "x" * 1000)[: alerts.MAX_LINE - 1] + "…"
    assert lines.count(f"    {cut}") == 3
    assert f"#{unknown.pk} failed: gone.task\n" in mail.body
    assert f"#{django_task.pk} failed: backend.task of result {result_id[:8]}\n" in mail.body
    assert f"#{function_task.pk} failed: Nightly cleanup\n" in mail.body
    assert "/admin/" not in mail.body


def test_a_mail_that_cannot_be_sent_is_logged_and_dropped(
    settings: Any,
    alerting: None,
    daemon_thread: None,
    commits: Callable[[], Any],
    logged: list[logging.LogRecord],
) -> None:
    smtp = "django.core.mail.backends.smtp.EmailBackend"
    port = free_port()  # nothing listens: the connection is refused
    if django.VERSION >= (6, 1):
        settings.MAILERS = {
            "default": {"BACKEND": smtp, "OPTIONS": {"host": "127.0.0.1", "port": port}}
        }
    else:
        settings.EMAIL_BACKEND, settings.EMAIL_HOST, settings.EMAIL_PORT = smtp, "127.0.0.1", port
    worker, tasks = failing_jobs(2)
    with commits():
        for task in tasks:
            fail(task, worker)
    mail_now()  # does not raise
    [record] = [r for r in logged if r.levelno == logging.ERROR]
    assert record.getMessage() == "taskd: could not mail ADMINS the alert about 2 task(s)"
    assert record.exc_info is not None and issubclass(record.exc_info[0], OSError)
    assert alerts.due_at() is None  # dropped: the next window starts empty


@pytest.mark.parametrize(
    ("key", "value"),
    [("ALERT_MAIL_ADMINS", "yes"), ("ALERT_INTERVAL", 0), ("ALERT_INTERVAL", "60")],
)
def test_wrong_alert_settings_are_a_clear_error(settings: Any, key: str, value: Any) -> None:
    settings.DJANGOTASKS = {**settings.DJANGOTASKS, key: value}
    with pytest.raises(ImproperlyConfigured, match=f"DJANGOTASKS\\['{key}'\\] must be"):
        conf.load()


# -- a real daemon -------------------------------------------------------------------------


def mails(directory: Path) -> list[EmailMessage]:
    """The messages Django's file-based backend wrote to ``directory``."""
    found = []
    for path in sorted(directory.glob("*.log")):
        for chunk in path.read_bytes().split(b"\n" + b"-" * 79 + b"\n"):
            if chunk.strip():
                message = email.message_from_bytes(chunk, policy=email.policy.default)
                assert isinstance(message, EmailMessage)
                found.append(message)
    return found


def test_a_daemon_mails_the_failure_of_a_task_once(start_daemon: Any, tmp_path: Path) -> None:
    outbox = tmp_path / "mail"
    daemon = start_daemon(DJANGOTASKS_TEST_MAIL_DIR=str(outbox))  # ALERT_INTERVAL 0.2 s
    task = wait_status(Job.objects.create().fail().run())
    assert task.status == Status.UNSUCCESSFUL
    # Mailed by the daemon's loop when the window closes, not only when it stops.
    wait_until(lambda: mails(outbox))
    assert daemon.stop() == 0
    [mail] = mails(outbox)
    assert mail["Subject"] == f"{PREFIX}Task #{task.pk} failed on {HOST}"
    assert mail["To"] == "ops@example.com"
    assert (
        f"#{task.pk} failed: Fail of job #{task.object_id}\n"
        f"    ValueError: bad row in job {task.object_id}\n"
        f"    /admin/djangotasks/task/{task.pk}/change/\n"
    ) in mail.get_content()


def test_what_is_pending_when_the_daemon_stops_is_mailed_at_once(
    alerting: None, mailoutbox: list[Any], commits: Callable[[], Any]
) -> None:
    alerts.buffer()
    worker, [task] = failing_jobs(1)
    with commits():
        fail(task, worker, " \n\t\n")  # blank: no reason to show
    alerts.close()  # the daemon's teardown, long before the window closes
    [mail] = mailoutbox
    assert f"#{task.pk} failed: Fail of job #{task.object_id}\n    (no reason recorded)\n" in (
        mail.body
    )
    assert alerts.due_at() is None  # no longer buffering


def test_a_daemon_thread_of_a_web_process_buffers_and_mails_in_its_thread(
    alerting: None, mailoutbox: list[Any]
) -> None:
    worker, [task] = failing_jobs(1)
    fail(task, worker)  # announced below, as if the daemon's thread had committed it

    def daemon() -> None:
        alerts.buffer()
        signals.task_status_changed.send(
            Task, task=task, old_status=Status.RUNNING, new_status=Status.UNSUCCESSFUL
        )
        mail_now()
        alerts.close()

    thread = threading.Thread(target=daemon)
    thread.start()
    thread.join()
    [mail] = mailoutbox
    assert mail.subject == f"{PREFIX}Task #{task.pk} failed on {HOST}"
    assert alerts.due_at() is None  # this thread buffered nothing
    assert socket.getdefaulttimeout() is None  # the web process's default is left alone
