"""How an idle daemon learns of new work: it sleeps until told, and never busy-polls.

PostgreSQL wakes it with LISTEN/NOTIFY, SQLite on Linux with inotify on the database files;
MySQL, and SQLite where inotify is unavailable, poll. Wake-ups are counted as the voluntary
context switches of the daemon (it is one thread: each is one return from ``select()``).
"""

from __future__ import annotations

import os
import select
import time
from pathlib import Path

import pytest
from django.db import connection

from djangotasks.daemon.linux import FileWrites
from djangotasks.statuses import Status
from tests.conftest import wait_status, wait_until
from tests.models import Job

sqlite_only = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's watcher")


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
