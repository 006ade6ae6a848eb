"""Load: one daemon runs 100 tasks at once that print steadily for a minute.

Every line is stored, and cancels and new tasks are still served meanwhile. The figures
(daemon CPU, latencies) are printed by bench/bench_load.py; this test checks the outcomes.
"""

from __future__ import annotations

import pytest

from djangotasks.statuses import Status
from tests.faulty import Fault
from tests.helpers import wait_status, wait_until
from tests.models import Job

TASKS = 100
LINES = 600  # one every 0.1 s: a minute
CANCELLED = 5


@pytest.mark.slow
def test_100_tasks_printing_for_a_minute_lose_no_line_and_leave_the_daemon_responsive(
    start_daemon,
):
    daemon = start_daemon(concurrency=TASKS)
    faults = [Fault.objects.create(count=LINES, seconds=0.1) for _ in range(TASKS)]
    tasks = [fault.steady().run() for fault in faults]
    wait_until(
        lambda: all(t.refresh_from_db() or t.status == Status.RUNNING for t in tasks), timeout=60
    )
    wait_until(lambda: "line 100 " in tasks[-1].log, timeout=60)

    # Under full load: cancels are served, and new work runs (in a slot freed by a cancel).
    for task in tasks[:CANCELLED]:
        task.cancel()
    for task in tasks[:CANCELLED]:
        wait_status(task, timeout=30)
        assert task.status == Status.CANCELLED, task.reason
    extra = [Job.objects.create().hello().run() for _ in range(CANCELLED)]
    for task in extra:
        wait_status(task, timeout=30)
        assert task.status == Status.SUCCESSFUL, task.reason

    for task in tasks[CANCELLED:]:
        wait_status(task, timeout=180)
    for task in tasks[CANCELLED:]:
        assert task.status == Status.SUCCESSFUL, task.reason
        expected = "".join(f"line {i} of task {task.pk}\n" for i in range(LINES))
        assert task.log == expected
        assert task.log_size == len(expected)
    for task in tasks[:CANCELLED]:
        lines = task.log.splitlines()
        assert lines == [f"line {i} of task {task.pk}" for i in range(len(lines))]
    assert daemon.popen.poll() is None
