"""The SQL a daemon sends: per task and by phase while it drains no-op tasks, and while idle.

The daemon runs in the bench process, as ``taskd run`` runs it (the same class, settings and
connection), so Django's ``execute_wrapper`` sees every statement it sends; so does the
peer's worker (django-tasks-db's ``Worker``, in ``--batch`` mode). A statement's phase is
read from the call stack: the innermost frame of the daemon whose function is listed below
(the look at the queue and the wake-up checks that lead to it count as claim).

Transaction control mostly bypasses the wrapper; the connection's commit, rollback and
autocommit switches are wrapped to count it. What each costs is the driver's: psycopg sends
BEGIN before a transaction's first statement and COMMIT at its end (its autocommit switch is
local); mysqlclient sends ``SET autocommit`` on each switch and COMMIT; SQLite's BEGIN passes
the wrapper as a statement and its COMMIT is a library call (counted as a round trip too).
Opening a connection is counted apart (``connection_created``): it costs several round trips
and, on PostgreSQL, a server process.

A task process is another process: a forked one inherits the wrapper and reports its
statements to a file. PostgreSQL counts every process's transactions itself
(``pg_stat_database.xact_commit``): that count is read before and after, from another
database, once the bench's own connections are closed (a backend reports its counts when it
exits).

The daemon in this process forks task processes and reaps every child of the process that is
not one of its tasks: no daemon subprocess of the suite may run meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import databases

if TYPE_CHECKING:
    from bench.suite import Suite

PHASES = ("claim", "start", "output", "finish", "other")
BOOT = "boot"  # start-up and shutdown: once per daemon, left out of the per-task figures

# djangotasks' functions -> phase; the innermost listed frame decides.
OURS = {
    "claim": "claim",
    "_look": "claim",
    "load_targets": "claim",
    "_schedule_next_due": "claim",
    "_woken": "claim",
    "_start_claimed": "start",
    "start": "start",
    "_watch": "start",
    "_save_pids": "start",
    "record_pids": "start",
    "save_progress": "output",
    "_save_progress": "output",
    "_read_output": "output",
    "_read_control": "output",
    "finish": "finish",
    "_record_ends": "finish",
    "finish_despite": "finish",
    "_check_cancels": "other",
    "_end_phantoms": "other",
    "_heartbeat": "other",
    "_maintenance": "other",
    "fire": "other",
    "_setup": BOOT,
    "_register": BOOT,
    "_teardown": BOOT,
}
# Modules (by prefix) -> phase, wherever they are called from: the log is output, the
# wake-up channels' checks ("has anyone else written?") are the look that finds new work.
OURS_MODULES = {"djangotasks.daemon.logwriter": "output", "djangotasks.daemon.channels": "claim"}
# The peer claims and starts in one UPDATE and runs the task in its own process.
PEER = {
    "get_locked": "claim",
    "claim": "claim",
    "exclusive_transaction": "claim",
    "set_successful": "finish",
    "set_failed": "finish",
}
CONTROL = ("BEGIN", "SAVEPOINT", "RELEASE", "ROLLBACK", "COMMIT")
DAEMON_TIMEOUT = 300.0  # a drain that never ends is stopped, and reported as such


class Recorder:
    """Counts what one connection sends, by phase: statements, round trips, connections."""

    def __init__(
        self,
        connection: Any,
        package: str,
        functions: Mapping[str, str],
        modules: Mapping[str, str] | None = None,
        children: Path | None = None,
    ) -> None:
        from django.db import connections

        # The wrapper itself, not django.db.connection (a proxy): its methods are replaced.
        self.connection = connections[connection.alias]
        self.vendor = connection.vendor
        self.package = package
        self.functions = functions
        self.modules = modules or {}
        self.children = children
        self.pid = os.getpid()
        self.statements: Counter[str] = Counter()
        self.round_trips: Counter[str] = Counter()
        self.connections: Counter[str] = Counter()
        self.sources: Counter[tuple[str, str]] = Counter()  # (phase, function): statements
        self._begun = False  # PostgreSQL: psycopg has sent BEGIN for the open transaction

    def phase(self) -> tuple[str, str]:
        """(phase, function) of the caller, from the innermost listed frame of the package."""
        if not self.functions and not self.modules:
            return "other", ""  # counted, not sorted: no stack to walk
        frame = sys._getframe(1)
        first = ""
        while frame is not None:
            module = frame.f_globals.get("__name__", "")
            if module.startswith(self.package):
                name = frame.f_code.co_name
                first = first or name
                for prefix, phase in self.modules.items():
                    if module.startswith(prefix):
                        return phase, name
                if name in self.functions:
                    return self.functions[name], name
            frame = frame.f_back  # type: ignore[assignment]
        return "other", first or "?"

    def _in_child(self, what: bytes) -> bool:
        """In a forked task process: report to the file (the counters die with the process)."""
        if os.getpid() == self.pid:
            return False
        if self.children is not None:
            fd = os.open(self.children, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, what)
            finally:
                os.close(fd)
        return True

    def _trip(self, trips: int = 1) -> None:
        if trips:
            phase, _ = self.phase()
            self.round_trips[phase] += trips

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if not self._in_child(b"s"):
            phase, source = self.phase()
            trips = 1
            if not sql.lstrip().upper().startswith(CONTROL):
                self.statements[phase] += 1
                self.sources[phase, source] += 1
            if self.vendor == "postgresql" and not self.connection.autocommit:
                trips += not self._begun  # psycopg's BEGIN, sent before this statement
                self._begun = True
            self.round_trips[phase] += trips
        return execute(sql, params, many, context)

    def _commit_trips(self) -> int:
        if self.vendor == "postgresql":
            begun, self._begun = self._begun, False
            return int(begun)  # psycopg sends nothing for a transaction that never began
        if self.vendor == "sqlite":
            raw = self.connection.connection
            return int(raw is not None and raw.in_transaction)
        return 1

    def _created(self, sender: Any, connection: Any, **kwargs: Any) -> None:
        if connection is self.connection and not self._in_child(b"c"):
            phase, _ = self.phase()
            self.connections[phase] += 1

    @contextlib.contextmanager
    def installed(self) -> Iterator[Recorder]:
        from django.db.backends.signals import connection_created

        conn = self.connection
        commit, rollback, switch = conn._commit, conn._rollback, conn._set_autocommit

        def _commit() -> Any:
            if not self._in_child(b"r"):
                self._trip(self._commit_trips())
            return commit()

        def _rollback() -> Any:
            if not self._in_child(b"r"):
                self._trip(self._commit_trips())
            return rollback()

        def _set_autocommit(autocommit: bool) -> Any:
            if os.getpid() == self.pid:
                self._begun = False  # Django commits or rolls back before any switch
                self._trip(int(self.vendor == "mysql"))  # mysqlclient: SET autocommit=...
            return switch(autocommit)

        # Instance attributes shadow the backend's methods until they are removed again.
        conn._commit, conn._rollback, conn._set_autocommit = _commit, _rollback, _set_autocommit
        connection_created.connect(self._created, weak=False)
        try:
            with conn.execute_wrapper(self):
                yield self
        finally:
            connection_created.disconnect(self._created)
            for name in ("_commit", "_rollback", "_set_autocommit"):
                vars(conn).pop(name, None)

    def child_counts(self) -> Counter[str]:
        """What the task processes reported: ``s`` statements, ``r`` commits and
        rollbacks, ``c`` connections opened."""
        if self.children is None or not self.children.exists():
            return Counter()
        return Counter(self.children.read_text())

    def record(self, suite: Suite, prefix: str, tasks: int) -> None:
        """The per-task figures ``{prefix}sql_<phase>``, ``rt_``, ``conn_`` and their ``all``."""
        for phase in (*PHASES, "all"):
            phases = PHASES if phase == "all" else (phase,)
            statements = sum(self.statements[p] for p in phases)
            trips = sum(self.round_trips[p] for p in phases)
            label = f"daemon, per task, {phase}"
            suite.figure(f"{prefix}sql_{phase}", f"{label}: statements", "/task").samples.append(
                statements / tasks
            )
            suite.figure(f"{prefix}rt_{phase}", f"{label}: round trips", "/task").samples.append(
                trips / tasks
            )
        connections = sum(self.connections[p] for p in PHASES)
        suite.figure(f"{prefix}conn_all", "connections opened", "/task").samples.append(
            connections / tasks
        )
        notes = []
        if self.statements[BOOT]:
            notes.append(f"start-up and shutdown (not counted): {self.statements[BOOT]} statements")
        other = [f"{n}x {f}" for (p, f), n in self.sources.most_common() if p == "other"]
        if other:
            notes.append(f"other: {', '.join(other[:5])}")
        suite.figures[f"{prefix}sql_all"].note = "; ".join(notes)


# -- per task, by phase ------------------------------------------------------------------


def per_task(suite: Suite) -> None:
    """Drain ``--statement-tasks`` no-op tasks with an in-process daemon, then the peer's
    worker on as many; count what each sends."""
    tasks = suite.args.statement_tasks
    suite.say(f"statements per task: {tasks} no-op tasks, daemon in-process")
    ours(suite, tasks)
    if suite.args.peer:
        suite.say(f"statements per task: {tasks} no-op tasks, the peer's worker in-process")
        peer(suite, tasks)


def ours(suite: Suite, tasks: int) -> None:
    from django.db import connection

    from bench.calls import new_probes
    from djangotasks import signals
    from djangotasks.daemon.daemon import Daemon
    from djangotasks.models import Task
    from djangotasks.statuses import Status

    # Enqueued while no daemon runs, so the figures are the daemon's work alone.
    ids = [probe.noop.run().pk for probe in new_probes(tasks)]
    before = server_transactions(suite)
    with tempfile.TemporaryDirectory() as tmp:
        recorder = Recorder(connection, "djangotasks.", OURS, OURS_MODULES, Path(tmp) / "c")
        daemon = Daemon(max_concurrency=suite.args.concurrency)
        completed = 0

        def count(sender: Any, **kwargs: Any) -> None:  # no SQL: the daemon sends it anyway
            nonlocal completed
            completed += 1
            if completed >= tasks:
                daemon.stop()

        signals.task_completed.connect(count, weak=False)
        try:
            with recorder.installed():
                in_process(daemon.run, daemon.stop)
        finally:
            signals.task_completed.disconnect(count)
        children = recorder.child_counts()
    connection.close()  # its backend reports its transactions as it exits
    after = server_transactions(suite)
    succeeded = Task.objects.filter(pk__in=ids, status=Status.SUCCESSFUL).count()
    assert succeeded == tasks, f"{succeeded} of {tasks} no-op tasks succeeded"
    recorder.record(suite, "", tasks)
    if connection.vendor != "sqlite":
        summary = suite.figures["sql_all"]
        summary.note += "; not counted: the wake-up channel's own connection"
    suite.figure("sql_children", "task processes: statements", "/task").samples.append(
        children["s"] / tasks
    )
    suite.figures["sql_children"].note = f"connections opened: {children['c'] / tasks:.2f}/task"
    if before is not None and after is not None:
        xact = suite.figure("xact", "server-side transactions", "/task")
        xact.samples.append((after - before) / tasks)
        xact.note = "with the daemon's start-up and shutdown, and any autovacuum"


def peer(suite: Suite, tasks: int) -> None:
    from django.db import connection
    from django_tasks_db.management.commands.db_worker import Worker
    from django_tasks_db.models import DBTaskResult

    from bench.benchapp.peer import peer_noop

    ids = [peer_noop.enqueue().id for _ in range(tasks)]
    before = server_transactions(suite)
    recorder = Recorder(connection, "django_tasks_db.", PEER)
    worker = Worker(
        queue_names=["default"], interval=0, batch=True, backend_name="default",
        startup_delay=False, max_tasks=None, worker_id="bench", excluded_queue_names=[],
    )  # fmt: skip
    with recorder.installed():
        worker.run()  # --batch: until the queue is empty
    connection.close()
    after = server_transactions(suite)
    done = DBTaskResult.objects.filter(id__in=ids, status="SUCCESSFUL").count()
    assert done == tasks, f"the peer ran {done} of {tasks} no-op tasks"
    recorder.record(suite, "peer_", tasks)
    if before is not None and after is not None:
        xact = suite.figure("peer_xact", "peer: server-side transactions", "/task")
        xact.samples.append((after - before) / tasks)


def in_process(run: Callable[[], None], stop: Callable[[], None]) -> None:
    """Run a daemon's loop here, stopped after DAEMON_TIMEOUT at the latest, and give the
    bench its signal handlers back afterwards (the daemon installs its own)."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    handlers[signal.SIGCHLD] = signal.getsignal(signal.SIGCHLD)
    guard = threading.Timer(DAEMON_TIMEOUT, stop)
    guard.start()
    try:
        run()
    finally:
        guard.cancel()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def server_transactions(suite: Suite) -> int | None:
    """PostgreSQL's count of the bench database's transactions, all processes; else None.

    The bench's connection is closed first and the count read until it stops moving: a
    backend reports its transactions at the latest when it exits, and not at once.
    """
    if suite.db != "postgres":
        return None
    from django.db import connections

    connections.close_all()
    query = (
        "SELECT xact_commit + xact_rollback,"
        " (SELECT count(*) FROM pg_stat_activity WHERE datname = %(db)s)"
        " FROM pg_stat_database WHERE datname = %(db)s"
    )
    last, deadline = None, time.monotonic() + 15
    while True:
        ((count, backends),) = databases.postgres_rows(query, {"db": databases.DB_NAME})
        if (backends == 0 and count == last) or time.monotonic() > deadline:
            return int(count)
        last = count
        time.sleep(0.3)
