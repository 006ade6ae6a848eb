"""How an idle daemon learns of new work: it sleeps until told, and never busy-polls.

PostgreSQL wakes it with LISTEN/NOTIFY, SQLite on Linux with inotify on the database files,
MariaDB by interrupting the statement it sleeps in; MySQL, and SQLite where inotify is
unavailable, poll. Wake-ups are counted as the voluntary context switches of the daemon (it
is one thread: each is one return from ``select()``).
"""

from __future__ import annotations

import os
import select
import selectors
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection

from djangotasks import notify
from djangotasks.daemon.channels import PollingChannel, Wakeup, channel_kind, open_channel
from djangotasks.daemon.channels.base import WakeupChannel
from djangotasks.daemon.linux import FileWrites
from djangotasks.daemon.schedules import GUESS_INTERVAL, LEARN_INTERVAL, ScheduleTimer
from djangotasks.models import Task, Worker
from djangotasks.statuses import Status
from tests.faulty import settings_env
from tests.helpers import ROOT, DaemonProcess, test_env, wait_status, wait_until
from tests.models import Job

sqlite_only = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's watcher")
mysql_only = pytest.mark.skipif(connection.vendor != "mysql", reason="MariaDB's wake-up")


def voluntary_switches(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise AssertionError(f"no voluntary_ctxt_switches for {pid}")


def test_idle_daemon_sleeps_instead_of_polling(daemon):
    wait_status(Job.objects.create().hello().run())  # settled: started, a task served
    before = voluntary_switches(daemon.pid)
    time.sleep(2)
    wakeups = voluntary_switches(daemon.pid) - before
    # Heartbeats, the 1 s safety stat (SQLite) or poll (MySQL): a handful. Polling the
    # SQLite files every 10 ms, as a daemon without inotify does, would be about 200.
    assert wakeups < 40, wakeups
    assert wait_status(Job.objects.create().hello().run()).status == Status.SUCCESSFUL


@sqlite_only
def test_without_inotify_the_daemon_watches_sqlite_by_polling(start_daemon):
    # Not Linux, or the user's inotify instances used up: the daemon must still serve.
    no_inotify = (
        "from djangotasks.daemon import linux\n"
        "def refuse(self, directory, names): raise OSError('inotify refused (test)')\n"
        "linux.FileWrites.__init__ = refuse"
    )
    daemon = start_daemon(prelude=no_inotify)
    wait_until(lambda: "no inotify" in daemon.log)
    for _ in range(3):
        task = wait_status(Job.objects.create().hello().run())
        assert task.status == Status.SUCCESSFUL, task.reason


def test_file_writes_wakes_on_writes_to_the_named_files_only(tmp_path):
    db, wal = tmp_path / "db.sqlite3", tmp_path / "db.sqlite3-wal"
    db.write_bytes(b"")
    watch = FileWrites(str(tmp_path), {db.name, wal.name})

    def readable() -> bool:
        return bool(select.select([watch.fileno()], [], [], 0)[0])

    try:
        assert not readable()
        neighbour = tmp_path / "other.sqlite3-wal"
        neighbour.write_text("created")
        assert not watch.drain()  # a file created, not one of ours
        with open(neighbour, "a") as f:
            f.write("written to")
        assert not readable()  # a neighbour's writes wake no one
        with open(db, "ab") as f:
            f.write(b"x")
        assert watch.drain()
        assert not readable()  # drained
        wal.write_bytes(b"created after the watch began")
        assert watch.drain()
        with open(wal, "ab") as f:
            f.write(b"and written to")
        assert watch.drain()
        wal.unlink()  # the last connection closed
        watch.drain()
        wal.write_bytes(b"a new WAL")
        assert watch.drain()
        with open(wal, "ab") as f:
            f.write(b"written to")
        assert watch.drain()
    finally:
        watch.close()
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(watch.fileno())  # closed


# -- the channels ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vendor", "name", "mariadb", "kind"),
    [
        ("postgresql", "app", False, "postgresql"),
        ("sqlite", "/srv/app/db.sqlite3", False, "sqlite"),
        ("sqlite", ":memory:", False, "polling"),
        ("sqlite", "file:app?mode=memory&cache=shared", False, "polling"),
        ("mysql", "app", True, "mariadb"),
        ("mysql", "app", False, "polling"),  # MySQL: no KILL QUERY ID
        ("oracle", "app", False, "polling"),
    ],
)
def test_each_database_gets_its_channel(vendor, name, mariadb, kind):
    assert channel_kind(vendor, name=name, mariadb=mariadb) == kind


def test_polling_reports_nothing_and_polls_at_the_setting():
    channel = PollingChannel(selectors.DefaultSelector(), 0.7)
    assert not channel.reports_changes
    assert channel.poll_interval == 0.7
    assert channel.fileno() is None and channel.due_at(0.0) is None
    assert channel.drain(0.0) == Wakeup.NONE and channel.keep() == []


def serve(channel: WakeupChannel, selector: selectors.BaseSelector) -> Wakeup:
    """Serve ``channel`` as the daemon's loop does until it reports something."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = time.monotonic()
        due = channel.due_at(now)
        for key, _events in selector.select(0.2 if due is None else min(0.2, due - now)):
            callback, _proc = key.data
            callback()
        now = time.monotonic()
        due = channel.due_at(now)
        if due is not None and now >= due and (news := channel.drain(now)):
            return news
    return Wakeup.NONE


def is_mariadb() -> bool:
    return connection.vendor == "mysql" and notify.is_mariadb(connection)


@pytest.fixture
def channel(transactional_db: None) -> Iterator[tuple[WakeupChannel, selectors.BaseSelector]]:
    """The test database's channel, opened as a daemon opens it."""
    selector = selectors.DefaultSelector()
    opened = open_channel("default", selector, 1.0)
    opened.drain(time.monotonic())  # a new connection says "look": nothing was heard before
    yield opened, selector
    opened.close()
    assert not selector.get_map()  # unregistered before its descriptor was closed
    selector.close()


def test_the_channel_of_the_test_database_reports_a_committed_run(channel):
    opened, selector = channel
    if connection.vendor == "mysql" and not is_mariadb():
        assert isinstance(opened, PollingChannel)
        return
    assert opened.reports_changes and opened.poll_interval > 1.0  # only a safety poll
    # A forked task keeps the channel's connection, so that it never closes the daemon's.
    assert bool(opened.keep()) == (connection.vendor != "sqlite")
    Job.objects.create().hello().run()
    assert Wakeup.QUEUE in serve(opened, selector)


def sleeping(all_databases: bool = False) -> list[tuple[int, int]]:
    """(connection id, query id) of the daemons' sleeping statements (on this database)."""
    where = "" if all_databases else "DB = DATABASE() AND "
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT ID, QUERY_ID FROM information_schema.PROCESSLIST "
            f"WHERE {where}COMMAND = 'Query' AND INFO LIKE %s ORDER BY ID",
            [notify.SLEEPING],
        )
        return [(int(a), int(b)) for a, b in cursor.fetchall()]


@mysql_only
def test_a_mariadb_wake_up_interrupts_only_this_databases_sleeps(channel):
    import MySQLdb

    opened, selector = channel
    if not is_mariadb():
        pytest.skip("MySQL: no wake-up")
    # Another database's daemon (another project, another test run) on the same server.
    other = MySQLdb.connect(**{**connection.get_connection_params(), "database": "mysql"})
    try:
        other.send_query(notify.mariadb_sleep(60).encode())
        theirs = wait_until(
            lambda: [row for row in sleeping(all_databases=True) if row[0] == other.thread_id()]
        )
        [conn] = opened.keep()
        [ours] = [row for row in sleeping() if row[0] == conn.thread_id()]
        notify.wake_mariadb("default")
        assert serve(opened, selector) == Wakeup.ANYTHING  # a KILL says no more than that
        # Ours sleeps again, in a new statement (the server may still show the one that
        # ended for a moment); theirs was not interrupted.
        wait_until(lambda: [row for row in sleeping() if row[0] == ours[0] and row != ours])
        assert theirs[0] in sleeping(all_databases=True)
    finally:
        with connection.cursor() as cursor:  # or it sleeps on after the close
            cursor.execute("KILL QUERY %s", [other.thread_id()])
        other.close()


def test_a_commit_of_unknown_content_reads_the_schedules_lazily():
    timer = ScheduleTimer()
    timer.fired_at = time.monotonic()
    timer.due_at = timer.fired_at + 3600  # the next tick is far away
    # Any commit on SQLite, any wake-up on MariaDB: at most one read per GUESS_INTERVAL.
    timer.changed(certain=False)
    assert timer.due_at == pytest.approx(timer.fired_at + GUESS_INTERVAL)
    # A NOTIFY that says a schedule was saved (PostgreSQL): soon.
    timer.changed()
    assert timer.due_at == pytest.approx(timer.fired_at + LEARN_INTERVAL)


# -- MariaDB's wake-up, with real daemons ---------------------------------------------------

# No polling at all: with the queue's poll, the sleeps' time-outs and the maintenance's
# cancel check an hour away or more, only a wake-up makes the daemon look.
NO_POLLING = (
    "from djangotasks.daemon.channels import base, mariadb\n"
    "base.SAFETY_POLL_INTERVAL = 3600.0\n"
    "mariadb.SLEEP_SECONDS = 3600\n"
)


@pytest.fixture
def mariadb_daemon(start_daemon, tmp_path) -> Callable[..., DaemonProcess]:
    """Start daemons that find work only through their MariaDB wake-up."""
    if not is_mariadb():
        pytest.skip("MariaDB's wake-up")
    env = {**settings_env(tmp_path, POLL_INTERVAL=3600.0), "DJANGOTASKS_WORKER_TIMEOUT": "7200"}
    # A daemon killed by an earlier test leaves its sleep behind (the server notices a
    # closed client only when the statement ends): interrupting it ends it.
    notify.wake_mariadb("default")
    wait_until(lambda: not sleeping())

    def start(concurrency: int = 4) -> DaemonProcess:
        daemon = start_daemon(concurrency=concurrency, prelude=NO_POLLING, **env)
        # Asleep: one statement per running daemon in the process list.
        daemons = Worker.objects.filter(stopped_at=None).count()
        wait_until(lambda: len(sleeping()) == daemons)
        return daemon

    return start


def test_run_wakes_a_mariadb_daemon_that_never_polls(mariadb_daemon):
    daemon = mariadb_daemon()
    for _ in range(3):
        task = wait_status(Job.objects.create().hello().run())
        assert task.status == Status.SUCCESSFUL, task.reason
    assert "lost" not in daemon.log
    wait_until(lambda: len(sleeping()) == 1)  # asleep again, on its one connection


def test_cancel_reaches_a_running_task_through_the_mariadb_wake_up(mariadb_daemon, tmp_path):
    mariadb_daemon()
    started = tmp_path / "started"
    task = Job.objects.create(seconds=600, path=str(started)).sleep().run()
    wait_until(started.exists)
    task.cancel()
    assert wait_status(task).status == Status.CANCELLED


def test_every_mariadb_daemon_is_woken(mariadb_daemon, tmp_path):
    daemons = [mariadb_daemon(concurrency=1), mariadb_daemon(concurrency=1)]
    before = {query for _connection, query in sleeping()}
    assert len(before) == 2
    started = [tmp_path / "first", tmp_path / "second"]
    tasks = [Job.objects.create(seconds=600, path=str(started[0])).sleep().run()]

    def both_asleep_again() -> bool:
        now = {query for _connection, query in sleeping()}
        return len(now) == 2 and not now & before

    # One commit interrupted both sleeps: both daemons sleep again, in new statements.
    wait_until(both_asleep_again)
    wait_until(started[0].exists)
    # The daemon that took the first task is full: only the other one's wake-up runs this.
    tasks.append(Job.objects.create(seconds=600, path=str(started[1])).sleep().run())
    wait_until(started[1].exists)
    for task in tasks:
        task.refresh_from_db()
    assert {task.worker_id for task in tasks} == {daemon.worker.pk for daemon in daemons}
    for task in tasks:
        task.cancel()
        assert wait_status(task).status == Status.CANCELLED


def test_a_mariadb_daemon_whose_wake_up_connection_is_killed_wakes_again(mariadb_daemon):
    daemon = mariadb_daemon()
    [(killed, _query)] = sleeping()
    with connection.cursor() as cursor:
        cursor.execute(f"KILL CONNECTION {killed}")
    wait_until(lambda: "the connection for MariaDB wake-ups was lost" in daemon.log)
    # It connects again (after a second) and sleeps on its new connection.
    wait_until(lambda: [row for row in sleeping() if row[0] != killed])
    task = wait_status(Job.objects.create().hello().run())
    assert task.status == Status.SUCCESSFUL, task.reason
    assert daemon.popen.poll() is None


COMMITTER = """
import django

django.setup()
from tests.models import Job

for _ in range(2):
    print(Job.objects.create().hello().run().pk)
"""


@pytest.fixture
def other_user(transactional_db: None, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment of a process that connects as a database user who sees the daemons'
    statements but may not interrupt them (another user's): its wake-ups fail."""
    if not is_mariadb():
        pytest.skip("MariaDB's wake-up")
    user = f"djangotasks_nokill_{os.getpid()}"
    database = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        cursor.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        cursor.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'nokill'")
        cursor.execute(f"GRANT ALL ON `{database}`.* TO '{user}'@'%'")
        cursor.execute(f"GRANT PROCESS ON *.* TO '{user}'@'%'")  # sees every statement
    name = f"nokill_settings_{os.getpid()}"
    (tmp_path / f"{name}.py").write_text(
        "from tests.settings import *  # noqa: F403\n"
        "DATABASES['default'] = {**DATABASES['default'], "
        f"'USER': {user!r}, 'PASSWORD': 'nokill'}}  # noqa: F405\n"
    )
    yield test_env(DJANGO_SETTINGS_MODULE=name, PYTHONPATH=f"{ROOT}{os.pathsep}{tmp_path}")
    with connection.cursor() as cursor:
        cursor.execute(f"DROP USER IF EXISTS '{user}'@'%'")


def test_a_wake_up_that_fails_fails_no_run(daemon, other_user):
    wait_until(sleeping)  # the daemon sleeps, as root
    result = subprocess.run(
        [sys.executable, "-c", COMMITTER],
        cwd=ROOT, env=other_user, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # Logged once, not at every run().
    assert result.stderr.count("could not wake the daemons") == 1, result.stderr
    assert "You are not owner of query" in result.stderr, result.stderr
    # The daemon still finds both, at its safety poll.
    for pk in result.stdout.split():
        task = wait_status(Task.objects.get(pk=int(pk)))
        assert task.status == Status.SUCCESSFUL, task.reason
