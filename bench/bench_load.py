"""Load benchmark: one daemon with max_concurrency=100 runs 100 tasks printing for a minute.

    .venv/bin/python bench/bench_load.py                    # SQLite
    .venv/bin/python bench/bench_load.py --db postgres      # or mysql
    .venv/bin/python bench/bench_load.py --tasks 20 --seconds 10   # a quick look

Prints the daemon's own CPU (its task processes not included), the lines stored against the
lines printed, and how long a cancel and a new task take while the daemon is full. Figures,
not pass/fail; tests/test_faults_load.py checks the outcomes. Uses the test suite's settings
and fixture tasks (``Fault.steady``) on a throwaway database.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import databases

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")
INTERVAL = 0.1  # seconds between two printed lines of a task
PROBES = 5  # cancels, then new tasks, measured under load


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` itself (children not included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wait(predicate, timeout: float, interval: float = 0.01):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up after {timeout} s waiting for {predicate}")
        time.sleep(interval)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres", "mysql"), default="sqlite")
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    lines = int(args.seconds / INTERVAL)

    tmp = Path(tempfile.mkdtemp(prefix="djangotasks-bench-load-"))
    name = (
        str(tmp / "bench.sqlite3")
        if args.db == "sqlite"
        else f"djangotasks_bench_load_{os.getpid()}"
    )
    databases.create(args.db, tmp, name)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DJANGOTASKS_TEST_DB=args.db,
        DJANGOTASKS_DB_NAME=name,
        PYTHONPATH=str(ROOT),
    )
    os.environ.pop("DJANGOTASKS_TASK_ID", None)
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "-v0"], cwd=ROOT, env=os.environ, check=True
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from djangotasks.models import Worker
    from djangotasks.statuses import Status
    from tests.faulty import Fault
    from tests.models import Job

    with open(tmp / "taskd.log", "wb") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "django", "taskd", "run", "--concurrency", str(args.tasks),
             "--pidfile", str(tmp / "taskd.pid")],
            cwd=ROOT, env=os.environ, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait(lambda: Worker.objects.filter(pid=daemon.pid).exists(), 60)
        print(f"{args.db}: {args.tasks} tasks x {lines} lines ({args.seconds:g} s each)")
        faults = [Fault.objects.create(count=lines, seconds=INTERVAL) for _ in range(args.tasks)]
        started = time.monotonic()
        tasks = [fault.steady().run() for fault in faults]
        wait(lambda: all(t.refresh_from_db() or t.status == Status.RUNNING for t in tasks), 120)
        print(f"  all {args.tasks} running after {time.monotonic() - started:.2f} s")
        cpu_start, wall_start = cpu_seconds(daemon.pid), time.monotonic()

        time.sleep(args.seconds / 2)
        cancel_latency = []
        for task in tasks[:PROBES]:
            t0 = time.monotonic()
            task.cancel()
            wait(lambda task=task: task.refresh_from_db() or task.is_finished(), 30)
            cancel_latency.append(time.monotonic() - t0)
        new_latency = []
        for _ in range(PROBES):
            t0 = time.monotonic()
            new = Job.objects.create().hello().run()
            wait(lambda new=new: new.refresh_from_db() or new.is_finished(), 30)
            new_latency.append(time.monotonic() - t0)

        for task in tasks:
            wait(lambda task=task: task.refresh_from_db() or task.is_finished(), 300)
        cpu = cpu_seconds(daemon.pid) - cpu_start
        wall = time.monotonic() - wall_start

        full = tasks[PROBES:]
        stored = sum(t.log.count("\n") for t in full)
        statuses = sorted({t.status for t in full})
        print(f"  lines stored: {stored} of {len(full) * lines} printed by the tasks that "
              f"ran to the end ({', '.join(statuses)})")  # fmt: skip
        print(f"  daemon CPU: {cpu:.2f} s in {wall:.1f} s = {100 * cpu / wall:.1f} % of one core "
              f"({1000 * cpu / max(stored, 1):.3f} ms per stored line)")  # fmt: skip
        print(f"  cancel under load (cancel() to cancelled): median "
              f"{statistics.median(cancel_latency) * 1000:.0f} ms, max "
              f"{max(cancel_latency) * 1000:.0f} ms")  # fmt: skip
        print(f"  new task under load (run() to successful): median "
              f"{statistics.median(new_latency) * 1000:.0f} ms, max "
              f"{max(new_latency) * 1000:.0f} ms")  # fmt: skip
        assert all(t.status == Status.CANCELLED for t in tasks[:PROBES])
    finally:
        daemon.terminate()
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        from django.db import connections

        connections.close_all()
        databases.drop(args.db, tmp, name)


if __name__ == "__main__":
    main()
