"""Concurrency: cancels racing ends, run() from many processes, daemons racing for tasks,
and tasks (or their objects, or their code) that disappear while scheduled or running."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.utils import timezone

from djangotasks.exceptions import InvalidTransition
from djangotasks.models import Task
from djangotasks.statuses import FINISHED, Status
from tests.faulty import REMOVE_CODE_ENV, Fault, read_pids
from tests.helpers import ROOT, pid_alive, test_env, wait_status, wait_until
from tests.models import Job

# Run in N fresh processes at once: each waits for the "go" file, then calls run() once.
RUN_SCRIPT = """
import os, sys, time, django
django.setup()
from tests.models import Job
job = Job.objects.get(pk=int(sys.argv[1]))
while not os.path.exists(sys.argv[2]):
    time.sleep(0.001)
print(job.counter().run().pk)
"""

# The same, for many objects: "bulk" runs the task on all of them in one transaction
# (run_for), "single" calls run() on each in turn; prints the live task of each object.
RUN_MANY_SCRIPT = """
import os, sys, time, django
django.setup()
from tests.models import Job
jobs = list(Job.objects.filter(pk__in=[int(pk) for pk in sys.argv[3].split(",")]).order_by("pk"))
while not os.path.exists(sys.argv[2]):
    time.sleep(0.001)
if sys.argv[1] == "bulk":
    tasks = Job.counter.run_for(jobs)
else:
    tasks = [job.counter().run() for job in jobs]
print(",".join(str(task.pk) for task in tasks))
"""


def assert_still_serving() -> None:
    task = wait_status(Job.objects.create().hello().run())
    assert task.status == Status.SUCCESSFUL, task.reason


def run_concurrently(job: Job, go: Path, processes: int) -> list[int]:
    """Call ``job.counter().run()`` from ``processes`` processes at the same moment."""
    outputs = start_together([[RUN_SCRIPT, str(job.pk), str(go)]] * processes, go)
    return [int(out) for out in outputs]


def start_together(scripts: list[list[str]], go: Path) -> list[str]:
    """Run each ``[script, *args]`` in a fresh process, all released at once by ``go``;
    what each printed."""
    procs = []
    for script, *args in scripts:
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", script, *args],
                cwd=ROOT,
                env=test_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    try:
        time.sleep(1.5)  # let them all reach the starting line (Django setup)
        go.touch()
        results = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err.decode()
    go.unlink()
    return [out.decode().strip() for out, _err in results]


def test_cancel_racing_the_natural_end(start_daemon, tmp_path):
    start_daemon(concurrency=8)
    outcomes = []
    for i in range(24):
        job = Job.objects.create(seconds=0.2, path=str(tmp_path / f"pid{i}"))
        task = job.sleep().run()
        wait_until(lambda job=job: read_pids(job.path))
        time.sleep(0.16 + 0.004 * (i % 12))  # aim the cancel at the end of the 0.2 s sleep
        refusal = ""
        try:
            task.cancel()
        except InvalidTransition as exc:
            refusal = str(exc)
        outcomes.append((task, refusal))

    for task, refusal in outcomes:
        wait_status(task)
        assert not refusal or "already finished" in refusal
        # Exactly one of the two wins, and what is recorded is consistent with the winner.
        if task.status == Status.CANCELLED:
            assert not refusal
            assert task.reason == "Cancelled."
        else:
            assert task.status == Status.SUCCESSFUL, task.reason
            assert task.log == "sleeping\nwoke up\n"
        (pid,) = read_pids(Job.objects.get(pk=task.object_id).path)
        assert not pid_alive(pid)
    assert Task.objects.filter(status__in=[Status.RUNNING, Status.REQUESTED_CANCEL]).count() == 0
    assert_still_serving()


def test_run_from_many_processes_at_once_schedules_one_task(start_daemon, tmp_path):
    job = Job.objects.create(path=str(tmp_path / "ran"))
    go = tmp_path / "go"

    pks = run_concurrently(job, go, processes=8)

    assert len(set(pks)) == 1
    assert Task.objects.filter(name="tests.Job.counter").count() == 1
    daemon = start_daemon()
    task = wait_status(Task.objects.get(pk=pks[0]))
    assert task.status == Status.SUCCESSFUL, task.reason
    assert Path(job.path).read_text() == f"{job.pk}\n"
    # Stopped, so that no run ends while the processes race (a later run() would then
    # rightly start another).
    assert daemon.stop() == 0

    # Again, now that it finished: one new run, and the finished one archived once.
    pks = run_concurrently(job, go, processes=8)

    assert len(set(pks)) == 1
    assert pks[0] != task.pk
    start_daemon()
    wait_status(Task.objects.get(pk=pks[0]))
    assert Path(job.path).read_text() == f"{job.pk}\n{job.pk}\n"
    rows = Task.objects.filter(name="tests.Job.counter").order_by("id")
    assert [(t.pk, t.archived) for t in rows] == [(task.pk, True), (pks[0], False)]


@pytest.mark.django_db(transaction=True)  # the racing processes see committed rows only
def test_bulk_runs_racing_each_other_and_single_runs_keep_one_live_task_per_object(tmp_path):
    jobs = [Job.objects.create() for _ in range(120)]
    # A third ran before and finished: the racers also archive (each may try to).
    earlier = {job.pk: job.counter().run() for job in jobs[::3]}
    Task.objects.filter(pk__in=[t.pk for t in earlier.values()]).update(
        status=Status.SUCCESSFUL, end_date=timezone.now()
    )
    go = tmp_path / "go"
    ids = ",".join(str(job.pk) for job in jobs)

    outputs = start_together([[RUN_MANY_SCRIPT, mode, str(go), ids] for mode in
                              ("bulk", "bulk", "bulk", "single")], go)  # fmt: skip

    # Every process got the same live task for each object: one row each, scheduled once.
    seen = [[int(pk) for pk in out.split(",")] for out in outputs]
    assert all(pks == seen[0] for pks in seen), seen
    rows = Task.objects.filter(name="tests.Job.counter")
    live = {task.object_id: task for task in rows.live()}
    assert [live[str(job.pk)].pk for job in jobs] == seen[0]
    assert {task.status for task in live.values()} == {Status.SCHEDULED}
    assert rows.count() == len(jobs) + len(earlier)  # nothing scheduled twice
    archived = set(rows.archived().values_list("pk", flat=True))
    assert archived == {task.pk for task in earlier.values()}


def test_daemons_racing_for_the_same_tasks_run_each_exactly_once(start_daemon, tmp_path):
    ran = tmp_path / "ran"
    jobs = [Job.objects.create(path=str(ran)) for _ in range(60)]
    tasks = [job.counter().run() for job in jobs]

    daemons = [start_daemon(concurrency=4, wait=False) for _ in range(3)]
    for task in tasks:
        wait_status(task, timeout=120)

    assert {t.status for t in tasks} == {Status.SUCCESSFUL}
    assert sorted(int(line) for line in ran.read_text().split()) == sorted(j.pk for j in jobs)
    assert all(d.popen.poll() is None for d in daemons)


def test_task_deleted_while_scheduled_is_simply_not_run(start_daemon, tmp_path):
    job = Job.objects.create(path=str(tmp_path / "ran"))
    task = job.counter().run()
    Task.objects.filter(pk=task.pk).delete()

    start_daemon()

    assert_still_serving()
    assert not Path(job.path).exists()
    assert job.counter().status == Status.DEFINED


def test_task_deleted_while_running_is_stopped_and_the_daemon_serves_on(start_daemon, tmp_path):
    daemon = start_daemon()
    fault = Fault.objects.create(path=str(tmp_path / "done"), count=6000, seconds=0.05)
    task = fault.steady().run()
    wait_until(lambda: "line 3 " in task.log)
    task.refresh_from_db()
    pid = task.pid

    Task.objects.filter(pk=task.pk).delete()

    wait_until(lambda: not pid_alive(pid), timeout=30)
    assert daemon.popen.poll() is None, daemon.log
    assert_still_serving()
    assert f"task #{task.pk} was deleted while running; killing it" in daemon.log


def test_object_deleted_while_scheduled_fails_the_task_clearly(start_daemon):
    job = Job.objects.create()
    task = job.hello().run()
    job.delete()

    start_daemon()

    wait_status(task)
    assert task.status == Status.UNSUCCESSFUL
    assert task.reason.startswith("Its object (")
    assert task.reason.endswith(f" #{task.object_id}) no longer exists.")
    assert "no longer exists" in task.log
    task = Task.objects.get(pk=task.pk)
    assert task.target is None
    with pytest.raises(ValueError, match="its object is gone"):
        task.run()
    assert_still_serving()


def test_object_deleted_while_running_lets_the_task_finish(daemon, tmp_path):
    fault = Fault.objects.create(path=str(tmp_path / "done"), count=20, seconds=0.05)
    task = fault.steady().run()
    wait_until(lambda: "line 1 " in task.log)

    Fault.objects.filter(pk=fault.pk).delete()

    wait_status(task)
    assert task.status == Status.SUCCESSFUL, task.reason
    assert task.log == "".join(f"line {i} of task {task.pk}\n" for i in range(20))
    assert Task.objects.get(pk=task.pk).target is None


def test_code_removed_while_scheduled_fails_the_task_clearly(start_daemon):
    from tests.faulty import vanishing

    task = vanishing.run()

    start_daemon(**{REMOVE_CODE_ENV: "1"})

    wait_status(task)
    assert task.status == Status.UNSUCCESSFUL
    assert task.reason == "Task code 'tests.faulty.vanishing' is not registered."
    assert "No @task is registered as 'tests.faulty.vanishing'" in task.log
    assert "should not run" not in task.log
    assert task.status in FINISHED
    assert_still_serving()
