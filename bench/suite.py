"""All figures on one database, in one process (Django's settings are per process).

``python -m bench.suite --db sqlite --runs 20 --json out.json`` — usually started by
``bench.run``, which prints the combined table. The daemon under test is a real
``python -m django taskd run`` subprocess with ``DJANGO_SETTINGS_MODULE=bench.settings``
for the latencies and drains here; calls.py times ``run()`` and ``enqueue()`` in this
process, statements.py and idle.py run the daemon in this process to count its SQL, and
forkcost.py forks a process loaded like the daemon: the floor of a process per task.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import calls, databases, forkcost, idle, statements
from bench.harness import Cpu, Figure, Process, bench_env, wait_until

LOG_POLL = 0.01  # how often the log figure reads the log: bounds its resolution
CPU_NOTE = 0.01  # how often the peer's CPU is noted while it starts: a clock tick
# Groups of figures (--only); each measures djangotasks and, where it has one, the peer.
GROUPS = ("calls", "bulk", "pickup", "cancel", "log", "drain", "statements", "idle")


def t0_of(log: str) -> float:
    """The ``time.time()`` a timestamped bench task printed as its first line."""
    from bench.benchapp.models import T0_PREFIX

    return float(log.split(T0_PREFIX, 1)[1].split()[0])


# -- the suite ---------------------------------------------------------------------------


class Suite:
    def __init__(self, db: str, bench_dir: Path, runs: int, args: argparse.Namespace) -> None:
        self.db = db
        self.bench_dir = bench_dir
        self.runs = runs
        self.args = args
        self.env = bench_env(db, bench_dir)
        self.figures: dict[str, Figure] = {}
        self._daemons = 0

    def figure(self, key: str, label: str, unit: str) -> Figure:
        return self.figures.setdefault(key, Figure(key, label, unit))

    def say(self, text: str) -> None:
        print(f"[{self.db}] {text}", flush=True)

    # daemons ---------------------------------------------------------------------------

    def start_taskd(self) -> Process:
        from djangotasks.models import Worker

        self._daemons += 1
        args = ["taskd", "run", "--pidfile", str(self.bench_dir / f"taskd-{self._daemons}.pid")]
        if self.args.concurrency:
            args += ["--concurrency", str(self.args.concurrency)]
        proc = Process(args, self.env, self.bench_dir / f"taskd-{self._daemons}.log")

        def registered() -> bool:
            proc.check()
            proc.note_cpu()  # the last note before its first task is the drain's baseline
            return Worker.objects.filter(pid=proc.pid, stopped_at=None).exists()

        wait_until(registered)
        return proc

    def start_peer(self) -> Process:
        self._daemons += 1
        args = ["db_worker", "--no-startup-delay", "--interval", str(self.args.peer_interval)]
        proc = Process(args, self.env, self.bench_dir / f"db_worker-{self._daemons}.log")
        # It records nothing when it is ready; Django starts in ~0.3 s. It may drain a whole
        # queue within this wait (500 no-op tasks in < 1 s): its CPU is noted meanwhile, for
        # the baseline of the drain's CPU.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            proc.note_cpu()
            time.sleep(CPU_NOTE)
        proc.check()
        return proc

    # djangotasks figures ---------------------------------------------------------------

    def run_all(self) -> None:
        from bench.benchapp.models import Probe

        only = self.args.only
        Probe.objects.all().delete()
        # No daemon runs yet: what the calls schedule stays in the queue (and is deleted).
        if "calls" in only:
            calls.calls(self)
        if "bulk" in only:
            calls.bulk(self)
        if only & {"pickup", "cancel", "log"}:
            taskd = self.start_taskd()
            try:
                time.sleep(2.0)
                self.figure("rss_idle", "daemon RSS, idle", "MB").samples.append(taskd.rss_mb())
                if "pickup" in only:
                    self.pickup_and_spawn(taskd)
                    if self.args.backend:
                        self.backend_pickup(taskd)
                if "cancel" in only:
                    self.cancel(taskd)
                if "log" in only:
                    self.log_visible(taskd)
            finally:
                taskd.stop()
            if "pickup" in only and self.args.peer:
                self.peer_pickup()
        if "drain" in only:
            self.drains()
        # In this process, with no daemon subprocess left (see statements.py).
        if "statements" in only:
            statements.per_task(self)
        if "idle" in only:
            idle.daemon(self, "idle_sql")
            idle.daemon(self, "idle_sql_scheduled", schedule=True)
            if self.args.peer:
                idle.peer(self)

    def pickup_and_spawn(self, taskd: Process) -> None:
        from bench.benchapp.models import Probe
        from djangotasks.statuses import FINISHED, Status

        pickup = self.figure("pickup", "enqueue to first line (idle daemon)", "ms")
        spawn = self.figure("spawn", "spawn: claim to first line", "ms")
        self.say(f"pickup and spawn: {self.runs} runs")
        for _ in range(self.runs):
            probe = Probe.objects.create()
            # An idle daemon, at a random point of whatever cycle it has.
            time.sleep(random.uniform(0.3, 0.8))
            before = time.time()
            task = probe.first_line().run()

            def done(task: Any = task) -> bool:
                taskd.check()
                task.refresh_from_db()
                return task.status in FINISHED

            wait_until(done)
            assert task.status == Status.SUCCESSFUL, (task.status, task.reason, task.log)
            t0 = t0_of(task.log)
            pickup.samples.append((t0 - before) * 1000)
            spawn.samples.append((t0 - task.start_date.timestamp()) * 1000)

    def cancel(self, taskd: Process) -> None:
        from bench.benchapp.models import T0_PREFIX, Probe
        from djangotasks.statuses import FINISHED, Status

        gone = self.figure("cancel", "cancel to process group gone", "ms")
        recorded = self.figure("cancel_status", "cancel to status 'cancelled'", "ms")
        self.say(f"cancel: {self.runs} runs")
        for _ in range(self.runs):
            task = Probe.objects.create().sleeper().run()

            def in_task_code(task: Any = task) -> bool:
                taskd.check()
                task.refresh_from_db()
                return bool(task.pid) and T0_PREFIX in task.log

            wait_until(in_task_code)
            time.sleep(random.uniform(0.1, 0.5))  # an idle daemon again
            pgid = task.pid
            start = time.monotonic()
            task.cancel()
            while True:
                try:
                    os.killpg(pgid, 0)
                except ProcessLookupError:
                    break
                if time.monotonic() - start > 60:
                    raise TimeoutError(f"process group {pgid} still there after 60 s")
                time.sleep(0.001)
            gone.samples.append((time.monotonic() - start) * 1000)

            def finished(task: Any = task) -> bool:
                task.refresh_from_db(fields=["status"])
                return task.status in FINISHED

            wait_until(finished, interval=0.005)
            recorded.samples.append((time.monotonic() - start) * 1000)
            assert task.status == Status.CANCELLED, task.status

    def log_visible(self, taskd: Process) -> None:
        from bench.benchapp.models import Probe
        from djangotasks.statuses import FINISHED

        visible = self.figure("log", "print to visible in task.log", "ms")
        runs = max(1, self.runs // 5)
        lines = 20
        self.say(f"log: {runs} runs of {lines} lines, read every {LOG_POLL * 1000:.0f} ms")
        for _ in range(runs):
            task = Probe.objects.create(count=lines, interval=0.05).ticker().run()
            offset, buffer, seen = 0, "", 0
            deadline = time.monotonic() + 60
            while seen < lines and time.monotonic() < deadline:
                text, offset = task.read_log(offset)
                now = time.time()
                buffer += text
                *complete, buffer = buffer.split("\n")
                for line in complete:
                    visible.samples.append((now - float(line)) * 1000)
                    seen += 1
                if seen < lines:
                    time.sleep(LOG_POLL)
            taskd.check()
            assert seen == lines, f"saw {seen} of {lines} lines"
            wait_until(lambda task=task: task.refresh_from_db() or task.status in FINISHED)

    def drains(self) -> None:
        """``--drain-runs`` drains of each kind, taking turns: ours, the backend's, the peer's."""
        kinds: list[Callable[[], None]] = [self.drain]
        if self.args.backend:
            kinds.append(self.backend_drain)
        if self.args.peer:
            kinds.append(self.peer_drain)
        runs, tasks = self.args.drain_runs, self.args.tasks
        self.fork_floor()
        self.say(f"drain: {runs} runs of {tasks} no-op tasks for each of {len(kinds)} kinds")
        for index in range(runs):
            for drain in calls.turns(kinds, index):
                drain()

    def drain(self) -> None:
        from bench.benchapp.models import Probe

        rate = self.figure("drain", f"drain {self.args.tasks} no-op tasks", "tasks/s")
        rss = self.figure("rss_busy", "daemon RSS, after the drain", "MB")
        # Enqueued with no daemon running, so the figure is the daemon's pace alone.
        probes = Probe.objects.bulk_create(Probe() for _ in range(self.args.tasks))
        ids = [probe.noop().run().pk for probe in probes]
        rate.samples.append(self.drain_rate(ids, rss, cpu=True))

    def drain_rate(self, ids: list[int], rss: Figure | None = None, cpu: bool = False) -> float:
        """Start a daemon on tasks enqueued while none ran; tasks/s from the first start to the
        last end, so the daemon's boot is not counted. ``cpu``: also its CPU per task."""
        from django.db.models import Max, Min

        from djangotasks.models import Task
        from djangotasks.statuses import FINISHED, Status

        taskd = self.start_taskd()
        try:

            def done() -> bool:
                taskd.check()
                finished = Task.objects.filter(pk__in=ids, status__in=FINISHED)
                return finished.count() == len(ids)

            wait_until(done, timeout=600, interval=0.1)
            if rss is not None:
                rss.samples.append(taskd.rss_mb())
            drained = taskd.cpu()
        finally:
            taskd.stop()
        tasks = Task.objects.filter(pk__in=ids)
        failed = tasks.exclude(status=Status.SUCCESSFUL).count()
        assert not failed, f"{failed} no-op tasks did not succeed"
        span = tasks.aggregate(first=Min("start_date"), last=Max("end_date"))
        if cpu:
            self.drain_cpu(drained - taskd.cpu_at(span["first"].timestamp()), len(ids))
        return len(ids) / (span["last"] - span["first"]).total_seconds()

    def drain_cpu(self, used: Cpu, tasks: int) -> None:
        """The daemon's CPU per task, and its task processes' (it reaps them, so theirs is in
        its children's time), from its first task's start, as the rate."""
        per_task = 1000 / tasks
        daemon = self.figure("cpu_daemon", "drain: daemon CPU per task", "ms")
        daemon.samples.append(used.own * per_task)
        children = self.figure("cpu_children", "drain: task processes' CPU per task", "ms")
        children.samples.append(used.children * per_task)
        total = self.figure("cpu_total", "drain: CPU per task, all processes", "ms")
        total.samples.append((used.own + used.children) * per_task)

    def fork_floor(self) -> None:
        """What a process per task costs before its first line: fork + exit of a process loaded
        like the daemon, measured in a fresh one (see forkcost.py) while nothing else runs."""
        cost = forkcost.measure_in_subprocess(self.env)
        self.say(f"fork floor: {cost['forks']:.0f} forks of a process loaded like the daemon")
        parent = self.figure("fork_parent", "fork + exit: CPU of the parent", "ms")
        parent.samples.append(cost["parent_ms"])
        child = self.figure("fork_child", "fork + exit: CPU of the child", "ms")
        child.samples.append(cost["child_ms"])
        parent.note = (
            f"{cost['forks']:.0f} forks of a {cost['rss_mb']:.0f} MB process loaded like the "
            "daemon, each child leaving at once (os._exit): the CPU a process per task costs "
            "before the task's first line"
        )

    # djangotasks as a backend of django.tasks: the same daemon, fed by enqueue() -----------

    def backend_pickup(self, taskd: Process) -> None:
        from django.tasks import TaskResultStatus

        from bench.benchapp.tasks import backend_first_line
        from djangotasks.backend import task_of

        pickup = self.figure("backend_pickup", "django.tasks enqueue() to first line", "ms")
        self.say(f"pickup through django.tasks enqueue(): {self.runs} runs")
        for _ in range(self.runs):
            time.sleep(random.uniform(0.3, 0.8))  # an idle daemon, as for pickup
            before = time.time()
            result = backend_first_line.enqueue()

            def done(result: Any = result) -> bool:
                taskd.check()
                result.refresh()
                return result.is_finished

            wait_until(done)
            task = task_of(result)
            assert result.status == TaskResultStatus.SUCCESSFUL, (task.status, task.log)
            pickup.samples.append((t0_of(task.log) - before) * 1000)

    def backend_drain(self) -> None:
        from bench.benchapp.tasks import backend_noop
        from djangotasks.models import Task

        tasks = self.args.tasks
        rate = self.figure("backend_drain", f"django.tasks: drain {tasks} no-op tasks", "tasks/s")
        result_ids = [backend_noop.enqueue().id for _ in range(tasks)]
        # A result's first attempt is the row whose object_id is the result's id.
        rows = Task.objects.filter(content_type=None, object_id__in=result_ids)
        ids = list(rows.values_list("pk", flat=True))
        assert len(ids) == tasks, (len(ids), tasks)
        rate.samples.append(self.drain_rate(ids))

    # the peer --------------------------------------------------------------------------

    def peer_pickup(self) -> None:
        from django.tasks import TaskResultStatus

        from bench.benchapp.peer import peer_first_line

        pickup = self.figure("peer_pickup", "peer: enqueue to first line", "ms")
        self.say(
            f"peer (django.tasks + django-tasks-db db_worker, --interval "
            f"{self.args.peer_interval}): {self.runs} pickups"
        )
        worker = self.start_peer()
        try:
            for _ in range(self.runs):
                time.sleep(random.uniform(0.3, 0.8))
                before = time.time()
                result = peer_first_line.enqueue()

                def done(result: Any = result) -> bool:
                    worker.check()
                    result.refresh()
                    return result.is_finished

                wait_until(done)
                assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
                pickup.samples.append((result.return_value - before) * 1000)
        finally:
            worker.stop()

    def peer_drain(self) -> None:
        from django.db.models import Max, Min
        from django_tasks_db.models import DBTaskResult

        from bench.benchapp.peer import peer_noop

        rate = self.figure("peer_drain", f"peer: drain {self.args.tasks} no-op tasks", "tasks/s")
        rss = self.figure("peer_rss", "peer: worker RSS, after the drain", "MB")
        ids = [peer_noop.enqueue().id for _ in range(self.args.tasks)]
        worker = self.start_peer()
        try:

            def drained() -> bool:
                worker.check()
                finished = DBTaskResult.objects.filter(id__in=ids, finished_at__isnull=False)
                return finished.count() == len(ids)

            wait_until(drained, timeout=600, interval=0.1)
            rss.samples.append(worker.rss_mb())
            done = worker.cpu()
        finally:
            worker.stop()
        span = DBTaskResult.objects.filter(id__in=ids).aggregate(
            first=Min("started_at"), last=Max("finished_at")
        )
        rate.samples.append(len(ids) / (span["last"] - span["first"]).total_seconds())
        # It runs its tasks itself: its own CPU is all of it, from its first task's start.
        used = done - worker.cpu_at(span["first"].timestamp())
        cpu = self.figure("peer_cpu", "peer: worker CPU per task, drain", "ms")
        cpu.samples.append(used.own * 1000 / len(ids))


@contextmanager
def database(db: str, bench_dir: Path) -> Iterator[None]:
    databases.create(db, bench_dir)
    try:
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        yield
    finally:
        from django.db import connections

        connections.close_all()
        databases.drop(db, bench_dir)


def groups(text: str) -> frozenset[str]:
    """``--only``: comma-separated groups of figures."""
    chosen = frozenset(name.strip() for name in text.split(",") if name.strip())
    unknown = chosen - set(GROUPS)
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown group(s) {', '.join(sorted(unknown))}; choose from {', '.join(GROUPS)}"
        )
    return chosen


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options of the figures, shared with ``bench.run`` (which passes them on)."""
    parser.add_argument("--runs", type=int, default=20, help="runs of each latency figure")
    parser.add_argument("--drain-runs", type=int, default=3,
                        help="runs of each drain, loop and bulk figure")  # fmt: skip
    parser.add_argument("--tasks", type=int, default=500, help="no-op tasks per drain and loop")
    parser.add_argument("--calls", type=int, default=200, help="samples of each call figure")
    parser.add_argument("--statement-tasks", type=int, default=200,
                        help="no-op tasks of the statements-per-task figures")  # fmt: skip
    parser.add_argument("--concurrency", type=int, help="daemon concurrency (default: its own)")
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--peer-interval", type=float, default=1.0, help="db_worker --interval")
    parser.add_argument("--only", type=groups, default=frozenset(GROUPS),
                        help=f"comma-separated groups of figures: {','.join(GROUPS)}")  # fmt: skip


def pass_on(args: argparse.Namespace) -> list[str]:
    """``args`` of ``add_options()`` as command-line arguments again."""
    argv = [
        "--runs", str(args.runs), "--drain-runs", str(args.drain_runs),
        "--tasks", str(args.tasks), "--calls", str(args.calls),
        "--statement-tasks", str(args.statement_tasks),
        "--idle-seconds", str(args.idle_seconds), "--peer-interval", str(args.peer_interval),
        "--peer" if args.peer else "--no-peer", "--only", ",".join(sorted(args.only)),
    ]  # fmt: skip
    if args.concurrency:
        argv += ["--concurrency", str(args.concurrency)]
    return argv


def server() -> str:
    """The database server measured, e.g. "MariaDB 10.11.6"."""
    import sqlite3

    from django.db import connection

    if connection.vendor == "postgresql":
        version = connection.pg_version
        return f"PostgreSQL {version // 10000}.{version % 10000}"
    if connection.vendor == "mysql":
        name = "MariaDB" if connection.mysql_is_mariadb else "MySQL"
        return f"{name} {'.'.join(map(str, connection.mysql_version))}"
    return f"SQLite {sqlite3.sqlite_version}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", default="sqlite", choices=["sqlite", "postgres", "mysql"])
    add_options(parser)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)

    bench_dir = Path(tempfile.mkdtemp(prefix=f"djangotasks-bench-{args.db}-"))
    os.environ.update(bench_env(args.db, bench_dir))
    from bench import settings

    args.peer = args.peer and settings.HAVE_PEER
    args.backend = settings.HAVE_BACKEND
    suite = Suite(args.db, bench_dir, args.runs, args)
    with database(args.db, bench_dir):
        name = server()
        suite.run_all()
    figures: dict[str, Any] = {
        key: {**asdict(f), "median": f.median, "p95": f.p95} for key, f in suite.figures.items()
    }
    figures["_server"] = name
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    for f in suite.figures.values():
        if f.median is None:
            suite.say(f"{f.label}: {f.note or 'no samples'}")
            continue
        suite.say(
            f"{f.label}: median {f.median:.2f} {f.unit}, p95 {f.p95:.2f} (n={len(f.samples)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
