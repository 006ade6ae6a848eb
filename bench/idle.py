"""The SQL an idle daemon sends, and its CPU: djangotasks' daemon and the peer's worker.

Each runs in the bench process (see statements.py) for a warm-up, then ``--idle-seconds``
of counted statements.
"""

from __future__ import annotations

import resource
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bench.statements import in_process

if TYPE_CHECKING:
    from bench.suite import Suite

IDLE_WARMUP = 2.0


def daemon(suite: Suite, key: str, schedule: bool = False) -> None:
    """Run the daemon in this process and count the SQL it sends while there is no work.

    ``schedule``: with a schedule whose next tick is hours away (a nightly job).
    """
    from djangotasks.daemon.daemon import Daemon
    from djangotasks.models import Schedule

    Schedule.objects.all().delete()
    if schedule:
        Schedule.objects.create(name="nightly", task_name="bench.benchapp.tasks.noop",
                                cron="0 3 * * *")  # fmt: skip
    seconds = suite.args.idle_seconds
    suite.say(f"idle statements: daemon in-process for {IDLE_WARMUP + seconds:.0f} s")
    taskd = Daemon(max_concurrency=suite.args.concurrency)
    window, cpu = _idle_window(seconds, taskd.run, taskd.stop)
    label = "idle daemon: SQL statements" + (", with a schedule" if schedule else "")
    suite.figure(key, label, "/s").samples.append(len(window) / seconds)
    if not schedule:
        suite.figure("idle_cpu", "idle daemon: CPU", "%").samples.append(cpu)
    kinds = Counter(window).most_common(6)
    suite.figures[key].note = "; ".join(f"{n}x {sql}" for sql, n in kinds)
    Schedule.objects.all().delete()


def peer(suite: Suite) -> None:
    """The same for the peer's worker, polling every ``--peer-interval`` seconds."""
    from django_tasks_db.management.commands.db_worker import Worker

    seconds = min(suite.args.idle_seconds, 10.0)  # it polls at a fixed interval
    suite.say(f"idle statements: the peer's worker in-process for {IDLE_WARMUP + seconds:.0f} s")
    worker = Worker(
        queue_names=["default"], interval=suite.args.peer_interval, batch=False,
        backend_name="default", startup_delay=False, max_tasks=None, worker_id="bench-idle",
        excluded_queue_names=[],
    )  # fmt: skip

    def stop() -> None:
        worker.running = False  # the loop ends after its current sleep

    window, cpu = _idle_window(seconds, worker.run, stop)
    figure = suite.figure("peer_idle_sql", "peer: idle worker: SQL statements", "/s")
    figure.samples.append(len(window) / seconds)
    suite.figure("peer_idle_cpu", "peer: idle worker: CPU", "%").samples.append(cpu)
    figure.note = "; ".join(f"{n}x {sql}" for sql, n in Counter(window).most_common(6))


def _idle_window(
    seconds: float, run: Callable[[], None], stop: Callable[[], None]
) -> tuple[list[str], float]:
    """The statements sent in ``seconds`` after a warm-up (their first words), and the CPU
    (% of one core) the process used meanwhile."""
    from django.db import connection

    stamps: list[tuple[float, str]] = []

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        stamps.append((time.monotonic(), " ".join(sql.split()[:4])[:60]))
        return execute(sql, params, many, context)

    cpu_before = 0.0

    def start_cpu() -> None:
        nonlocal cpu_before
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu_before = usage.ru_utime + usage.ru_stime

    started = time.monotonic()
    timer = threading.Timer(IDLE_WARMUP + seconds, stop)
    with connection.execute_wrapper(count):
        timer.start()
        threading.Timer(IDLE_WARMUP, start_cpu).start()
        in_process(run, stop)
    timer.cancel()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = 100 * (usage.ru_utime + usage.ru_stime - cpu_before) / seconds
    start, end = started + IDLE_WARMUP, started + IDLE_WARMUP + seconds
    return [sql for at, sql in stamps if start <= at <= end], cpu
