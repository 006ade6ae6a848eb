"""Real daemons running real task processes: output, cancel, dependencies, exactly once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from djangotasks.models import Task
from djangotasks.statuses import Status
from tests.helpers import pid_alive, wait_status, wait_until
from tests.models import Job
from tests.tasks import after_cleanup


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return any(pid_alive(int(p)) for p in _group_members(pgid))


def _group_members(pgid: int) -> list[str]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
                members.append(entry.name)
    return members


def test_success_records_output_dates_and_worker(daemon):
    job = Job.objects.create()
    task = wait_status(job.hello().run())
    assert task.status == Status.SUCCESSFUL, task.reason
    assert task.log == f"hello from job {job.pk}\n"
    assert task.start_date <= task.end_date
    assert task.duration.total_seconds() >= 0
    assert task.worker.pid == daemon.pid
    assert task.pid and task.pid != daemon.pid
    assert task.log_size == len(task.log)


def test_an_exception_fails_the_task_with_its_traceback(daemon):
    task = wait_status(Job.objects.create().fail().run())
    assert task.status == Status.UNSUCCESSFUL
    assert task.reason.startswith("ValueError: bad row in job")
    assert "about to fail" in task.log
    assert "Traceback (most recent call last)" in task.log


def test_unflushed_print_and_carriage_returns_are_visible_while_running(daemon, tmp_path):
    release = tmp_path / "release"
    job = Job.objects.create(path=str(release))
    task = job.unflushed().run()
    wait_until(lambda: "\rprogress 50%" in Task.objects.get(pk=task.pk).log)
    task.refresh_from_db()
    assert task.status == Status.RUNNING
    assert task.log == "partial line without newline\rprogress 50%"
    release.touch()
    assert wait_status(task).status == Status.SUCCESSFUL


def test_stderr_logging_and_subprocess_output_are_captured(daemon):
    job = Job.objects.create()
    shell = wait_status(job.subprocess_output().run())
    assert shell.status == Status.SUCCESSFUL, shell.log
    for line in ("from a shell\n", "to stderr\n", "from os.system\n"):
        assert line in shell.log
    logged = wait_status(job.logging_records().run())
    assert "INFO tests.job: an info record" in logged.log
    assert "WARNING tests.job: a warning record" in logged.log


def test_invalid_utf8_and_nul_bytes_never_break_the_log(daemon):
    task = wait_status(Job.objects.create().invalid_utf8().run())
    assert task.status == Status.SUCCESSFUL, task.reason
    assert "before \ufffd\ufffd invalid \u20ac after\n" in task.log
    assert "nul \ufffd byte\n" in task.log


def test_huge_output_is_stored_completely_in_chunks(daemon):
    lines = 100_000  # 10 MB
    task = wait_status(Job.objects.create(count=lines).huge_output().run(), timeout=120)
    assert task.status == Status.SUCCESSFUL, task.reason
    assert task.log_size == lines * 100
    log = task.log
    assert len(log) == lines * 100
    assert log.count("\n") == lines
    assert task.log_chunks.count() > 1


def test_progress_is_reported(daemon, tmp_path):
    release = tmp_path / "release"
    task = Job.objects.create(count=1000, path=str(release)).progress().run()

    def done() -> bool:
        task.refresh_from_db()
        return task.progress_current == 1000

    wait_until(done)
    assert task.progress == (1000, 1000, "step 1000")
    assert task.progress.percent == 100.0
    release.touch()
    wait_status(task)


def test_cancel_kills_the_whole_process_group(daemon, tmp_path):
    pid_file = tmp_path / "grandchild"
    task = Job.objects.create(path=str(pid_file)).grandchild().run()
    wait_until(pid_file.exists)
    grandchild = int(wait_until(pid_file.read_text))
    pgid = wait_until(lambda: Task.objects.get(pk=task.pk).pid)
    assert group_alive(pgid)
    task.cancel()
    task = wait_status(task)
    assert task.status == Status.CANCELLED
    assert task.reason == "Cancelled."
    assert not pid_alive(grandchild)
    assert not group_alive(pgid)


def test_cancel_of_a_task_that_ignores_sigterm_uses_sigkill(daemon, tmp_path):
    pid_file = tmp_path / "pid"
    task = Job.objects.create(path=str(pid_file)).ignore_sigterm().run()
    wait_until(lambda: "ignoring SIGTERM" in Task.objects.get(pk=task.pk).log)
    pid = int(pid_file.read_text())
    task.cancel()
    task = wait_status(task, timeout=30)
    assert task.status == Status.CANCELLED
    assert not pid_alive(pid)


def test_a_grandchild_that_escapes_with_setsid_is_killed_at_the_end(daemon, tmp_path):
    pid_file = tmp_path / "escaped"
    task = Job.objects.create(path=str(pid_file)).escape().run()
    escaped = int(wait_until(lambda: pid_file.exists() and pid_file.read_text()))
    assert os.getpgid(escaped) != task.pk  # it left the task's process group
    task.cancel()
    assert wait_status(task).status == Status.CANCELLED
    wait_until(lambda: not pid_alive(escaped), timeout=10)


def test_exit_codes_become_reasons(daemon):
    job = Job.objects.create()
    hard = wait_status(job.exit_hard().run())
    assert hard.status == Status.UNSUCCESSFUL
    assert hard.reason == "Exited with status 3."
    assert "leaving with os._exit(3)" in hard.log
    closed = wait_status(job.close_output().run())
    assert closed.status == Status.SUCCESSFUL, closed.reason
    assert "closing my output now" in closed.log


def test_timeout_kills_and_says_so(daemon):
    task = wait_status(Job.objects.create().too_slow().run(), timeout=30)
    assert task.status == Status.UNSUCCESSFUL
    assert task.reason == "Timed out after 1 s."
    assert "will time out" in task.log


def test_dependencies_run_in_order_in_the_daemon(daemon):
    job = Job.objects.create()
    three = wait_status(job.step_three().run())
    assert three.status == Status.SUCCESSFUL, three.reason
    one, two = job.step_one(), job.step_two()
    assert one.end_date <= two.start_date
    assert two.end_date <= three.start_date
    complete = three.complete_log()
    assert complete.index("step one of") < complete.index("step two of")
    assert complete.index("step two of") < complete.index("step three of")
    # A successful dependency is not run again.
    again = wait_status(job.step_three().run())
    assert again.status == Status.SUCCESSFUL
    assert job.step_one().pk == one.pk
    assert job.step_two().pk == two.pk
    function = wait_status(after_cleanup().run())
    assert function.status == Status.SUCCESSFUL


def test_a_failing_dependency_fails_the_dependent_without_running_it(daemon):
    job = Job.objects.create(text="fail-one")
    three = wait_status(job.step_three().run())
    assert three.status == Status.UNSUCCESSFUL
    assert "Step two" in three.reason
    assert three.start_date is None  # never ran
    assert "step one failed" in job.step_two().reason


def test_a_cancelled_dependency_fails_the_dependent(daemon, tmp_path):
    job = Job.objects.create(path=str(tmp_path / "never"))
    two = job.step_two().run()
    one = job.step_one()
    wait_status(one, Status.RUNNING)
    one.cancel()
    two = wait_status(two)
    assert two.status == Status.UNSUCCESSFUL
    assert two.reason.startswith("Dependency 'Step one'")
    assert "cancelled" in two.reason.lower()


@pytest.mark.parametrize("tasks", [60])
def test_two_daemons_run_each_task_exactly_once(start_daemon, tmp_path, tasks):
    ledger = tmp_path / "ledger"
    first, second = start_daemon(concurrency=4), start_daemon(concurrency=4)
    jobs = [Job.objects.create(path=str(ledger)) for _ in range(tasks)]
    scheduled = [job.counter().run() for job in jobs]
    for task in scheduled:
        assert wait_status(task, timeout=120).status == Status.SUCCESSFUL
    runs = ledger.read_text().split()
    assert sorted(runs) == sorted(str(job.pk) for job in jobs)
    workers = set(Task.objects.filter(pk__in=[t.pk for t in scheduled]).values_list(
        "worker__pid", flat=True))  # fmt: skip
    assert workers <= {first.pid, second.pid}


def test_sigterm_stops_an_idle_daemon_and_marks_it_stopped(daemon):
    worker = daemon.worker
    assert daemon.stop() == 0
    worker.refresh_from_db()
    assert worker.stopped_at is not None


def test_task_started_and_completed_signals_are_sent_in_the_daemon(start_daemon, tmp_path):
    record = tmp_path / "signals"
    daemon = start_daemon(DJANGOTASKS_SIGNAL_LOG=str(record))
    job = Job.objects.create()
    ok = wait_status(job.hello().run())
    failed = wait_status(job.fail().run())
    wait_until(lambda: record.exists() and record.read_text().count("completed") == 2)
    assert record.read_text().splitlines() == [
        f"started {ok.pk} running job {job.pk} {daemon.pid}",
        f"completed {ok.pk} successful job {job.pk} {daemon.pid}",
        f"started {failed.pk} running job {job.pk} {daemon.pid}",
        f"completed {failed.pk} unsuccessful job {job.pk} {daemon.pid}",
    ]


def test_graceful_stop_lets_a_running_task_finish(daemon, tmp_path):
    started = tmp_path / "started"
    task = Job.objects.create(seconds=1.5, path=str(started)).sleep().run()
    wait_until(started.exists)
    daemon.popen.send_signal(signal.SIGTERM)
    assert daemon.popen.wait(30) == 0
    task.refresh_from_db()
    assert task.status == Status.SUCCESSFUL
    assert task.log == "sleeping\nwoke up\n"
