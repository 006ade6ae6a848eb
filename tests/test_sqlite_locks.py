"""The daemon keeps the locks its SQLite connection holds on the database's "-shm" file.

SQLite's WAL index lives in "-shm", mapped into every process that has the database open.
Each such process holds a shared POSIX lock on one byte of it, the "dead man switch": a
process that opens the database rebuilds the index (truncates and re-initialises "-shm") if
it can take that byte exclusively, that is, if no other process holds it. POSIX record locks
belong to the process, and closing *any* descriptor of a file drops all of them: a daemon
whose change watcher opened and closed "-shm" (to read the WAL index header) lost its switch
on the first look, and the next process to open the database (a web request, a task)
rebuilt the index under the daemon's mapping: SIGBUS (exit -7), or a corrupt index.

The locks are read in /proc/locks (Linux), one a line: ``1: POSIX  ADVISORY  READ <pid>
<major>:<minor>:<inode> <start> <end>``, the device numbers in hex, the inode in decimal.
Nothing here opens "-shm": closing it would drop the test process's own locks on it.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.db import connection

from djangotasks.models import Task
from djangotasks.statuses import FINISHED, PENDING, Status
from tests.faulty import read_pids
from tests.helpers import ROOT, DaemonProcess, pid_alive, wait_status, wait_until
from tests.models import Fault, Job
from tests.test_wakeups import voluntary_switches
from tests.untrusted_tasks import exact_text

pytestmark = [
    pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's WAL index"),
    pytest.mark.skipif(not Path("/proc/locks").exists(), reason="reads /proc/locks (Linux)"),
]

# SQLite's unix VFS: the 8 lock bytes of the WAL index start at (22 + 8) * 4 = 120 in "-shm";
# the dead man switch is the byte after them. Every process with the database open holds a
# shared lock on it for as long as it has it open (seen in /proc/locks, and checked below
# for the test process itself before anything relies on it).
DEAD_MAN_SWITCH = 128

SOAK_SECONDS = float(os.environ.get("DJANGOTASKS_SOAK_SECONDS", "120"))
CHURNERS = 3
IN_FLIGHT = 6  # tasks scheduled or running at once: the daemon's 4, and 2 waiting
SLEEP_SECONDS = 600.0  # a sleep task that is not cancelled would fail the test, not pass it

# Opens the database, reads, writes a row and closes, as fast as it can: what a web process
# does on each request. Prints how many writes it committed.
CHURNER = """
import os, sqlite3, sys, time
db, row, stop, deadline = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
commits = 0
while not os.path.exists(stop) and time.time() < deadline:
    db_connection = sqlite3.connect(db, timeout=30)
    try:
        db_connection.execute("PRAGMA synchronous=NORMAL")
        db_connection.execute("SELECT count(*) FROM djangotasks_task WHERE status = 'running'")
        db_connection.execute("UPDATE tests_job SET count = count + 1 WHERE id = ?", (row,))
        db_connection.commit()
        commits += 1
    finally:
        db_connection.close()
print(commits)
"""

ENDED = re.compile(r"^task #(\d+) \S+ (successful|unsuccessful|cancelled)\b", re.MULTILINE)


@dataclass(frozen=True)
class PosixLock:
    pid: int
    mode: str  # READ or WRITE
    start: int
    end: int | None  # None: to the end of the file

    def covers(self, offset: int) -> bool:
        return self.start <= offset and (self.end is None or offset <= self.end)


def database_path() -> str:
    return os.path.realpath(str(connection.settings_dict["NAME"]))


def shm_locks(db_path: str) -> list[PosixLock]:
    """The POSIX locks held on ``db_path``'s "-shm" file, by any process."""
    inode = os.stat(db_path + "-shm").st_ino
    locks = []
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        # "1: -> POSIX ..." is a request waiting for a lock, not a lock; FLOCK and OFDLCK
        # locks are not SQLite's.
        if len(fields) < 8 or fields[1] != "POSIX":
            continue
        # By inode number only: on some filesystems (overlayfs) the device shown here is not
        # the st_dev that stat() reports. The pid narrows it down enough.
        if int(fields[5].rsplit(":", 1)[1]) == inode:
            end = None if fields[7] == "EOF" else int(fields[7])
            locks.append(PosixLock(int(fields[4]), fields[3], int(fields[6]), end))
    return locks


def holds_dead_man_switch(pid: int, db_path: str) -> bool:
    # Covering the byte, not starting at it: the kernel merges a process's adjacent locks of
    # one mode, and the read lock on the last reader slot (byte 127) is adjacent.
    return any(
        lock.pid == pid and lock.mode == "READ" and lock.covers(DEAD_MAN_SWITCH)
        for lock in shm_locks(db_path)
    )


def assert_holds_dead_man_switch(pid: int, db_path: str, timeout: float = 5.0) -> None:
    try:
        wait_until(lambda: holds_dead_man_switch(pid, db_path), timeout)
    except AssertionError:
        raise AssertionError(
            f"process {pid} holds no shared lock on byte {DEAD_MAN_SWITCH} of {db_path}-shm: "
            "the next process to open the database can rebuild the WAL index under its "
            f"mapping. Locks on that file: {shm_locks(db_path)}"
        ) from None


def assert_alive(daemon: DaemonProcess) -> None:
    code = daemon.popen.poll()
    assert code is None, f"the daemon died (exit code {code}; -7 is SIGBUS):\n{daemon.log}"


def test_daemon_keeps_its_sqlite_locks_after_many_wakeups(daemon):
    db_path = database_path()
    Job.objects.exists()  # the test's own connection is open
    assert_holds_dead_man_switch(os.getpid(), db_path)  # the premise, checked
    before = voluntary_switches(daemon.pid)

    for i in range(20):
        job = Job.objects.create(text=f"round {i}")
        task = job.hello().run()
        Job.objects.filter(pk=job.pk).update(count=1)  # another commit: another wake-up
        task = wait_status(task)
        assert task.status == Status.SUCCESSFUL, task.reason
        Job.objects.filter(pk=job.pk).update(count=2)  # and one while it is idle

    # Each look at the files after a commit is a return from select(): a voluntary switch.
    assert voluntary_switches(daemon.pid) - before >= 20
    assert_alive(daemon)
    assert_holds_dead_man_switch(daemon.pid, db_path)
    assert wait_status(Job.objects.create().hello().run()).status == Status.SUCCESSFUL


@dataclass
class Run:
    task: Task
    count: int | None = None  # print_exactly: how many characters; None: a sleep to cancel
    cancel_at: float | None = None


def start_run(rng: random.Random, pid_path: Path) -> Run:
    if rng.random() < 0.5:
        count = rng.choice(
            [rng.randint(0, 100), rng.randint(100, 20_000), rng.randint(20_000, 200_000)]
        )
        return Run(Fault.objects.create(count=count).print_exactly().run(), count=count)
    job = Job.objects.create(seconds=SLEEP_SECONDS, path=str(pid_path))
    # Cancelled while scheduled, while starting, or while sleeping.
    return Run(job.sleep().run(), cancel_at=time.monotonic() + rng.uniform(0, 1.5))


@pytest.mark.slow
@pytest.mark.timeout(SOAK_SECONDS + 300)
def test_soak_connections_churn_next_to_a_daemon(start_daemon, tmp_path):
    # Before the fix (471b41c, the watcher reading the WAL index header from "-shm"), on a
    # 2-CPU VM: the daemon had lost its switch at its first look (0.0 s) and died of SIGBUS
    # (exit -7) after 0.5 to 8.2 s (10 runs). The test process closing its connection between
    # rounds is what lets a churner rebuild the index: with it held open, that daemon ran
    # a 40 s soak without SIGBUS (one try), and only the lock check at the end failed.
    seed = int(os.environ.get("DJANGOTASKS_SOAK_SEED", time.time_ns() % 1_000_000))
    print(f"DJANGOTASKS_SOAK_SEED={seed}")
    rng = random.Random(seed)
    db_path = database_path()
    daemon = start_daemon(concurrency=4)
    rows = [Job.objects.create(text="churner").pk for _ in range(CHURNERS)]
    stop = tmp_path / "stop"
    churners: list[subprocess.Popen[bytes]] = []
    outputs = [(tmp_path / f"churner-{i}.out", tmp_path / f"churner-{i}.err") for i in rows]
    runs: dict[int, Run] = {}
    lock_lost_after: float | None = None
    started = time.monotonic()
    try:
        for row, (out, err) in zip(rows, outputs, strict=True):
            with open(out, "wb") as stdout, open(err, "wb") as stderr:
                command = [sys.executable, "-c", CHURNER, db_path, str(row), str(stop)]
                deadline = time.time() + SOAK_SECONDS + 120  # a safety net: stopped below
                churners.append(
                    subprocess.Popen(
                        [*command, str(deadline)], cwd=ROOT, stdout=stdout, stderr=stderr
                    )
                )

        def check_processes() -> None:
            if daemon.popen.poll() is not None:
                print(f"the daemon died after {time.monotonic() - started:.1f} s")
            assert_alive(daemon)
            for churner, (_out, err) in zip(churners, outputs, strict=True):
                code = churner.poll()
                assert code is None or stop.exists(), f"a churner died: {err.read_text()}"

        in_flight: set[int] = set()
        while time.monotonic() < started + SOAK_SECONDS:
            check_processes()
            if lock_lost_after is None and not holds_dead_man_switch(daemon.pid, db_path):
                lock_lost_after = time.monotonic() - started
                print(f"the daemon held no dead man switch after {lock_lost_after:.1f} s")
            if in_flight:
                statuses = Task.objects.filter(pk__in=in_flight).values_list("pk", "status")
                in_flight -= {pk for pk, status in statuses if status in FINISHED}
            for pk in in_flight:
                run = runs[pk]
                if run.cancel_at is not None and time.monotonic() >= run.cancel_at:
                    run.task.cancel()
                    run.cancel_at = None
            while len(in_flight) < IN_FLIGHT:
                run = start_run(rng, tmp_path / f"sleep-{len(runs)}.pid")
                runs[run.task.pk] = run
                in_flight.add(run.task.pk)
            # The test process holds the database open only while it asks, as a web process
            # does: otherwise its own switch would keep anyone from rebuilding the index.
            connection.close()
            time.sleep(0.02)  # one round of a poll that ends at the deadline above

        # Wind down: cancel what is left to cancel, and wait for every task to end.
        for pk in in_flight:
            if runs[pk].cancel_at is not None:
                runs[pk].task.cancel()

        def all_ended() -> bool:
            check_processes()
            return not Task.objects.filter(pk__in=in_flight).exclude(status__in=FINISHED).exists()

        wait_until(all_ended, timeout=120, interval=0.1)
        assert_alive(daemon)
        stop.touch()
        wait_until(lambda: all(churner.poll() is not None for churner in churners), timeout=60)
    finally:
        stop.touch()
        for churner in churners:
            if churner.poll() is None:
                churner.kill()
                churner.wait()

    print(f"{len(runs)} tasks in {SOAK_SECONDS:.0f} s; churner writes: ", end="")
    for churner, row, (out, err) in zip(churners, rows, outputs, strict=True):
        assert churner.returncode == 0, err.read_text()
        commits = int(out.read_text())
        print(commits, end=" ")
        assert Job.objects.get(pk=row).count == commits  # no write lost
    print()

    assert_holds_dead_man_switch(daemon.pid, db_path)
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA integrity_check")
        assert cursor.fetchall() == [("ok",)]
    assert not Task.objects.filter(status__in=PENDING).exists()
    assert Task.objects.count() == len(runs)  # no retries, no duplicates
    assert daemon.stop() == 0, daemon.log  # every line it had to say about the tasks is out

    ended: dict[int, list[str]] = {}
    for match in ENDED.finditer(daemon.log):
        ended.setdefault(int(match[1]), []).append(match[2])
    kinds = {"printed": 0, "cancelled while scheduled": 0, "cancelled once started": 0}
    for task in Task.objects.order_by("id"):
        run = runs[task.pk]
        if run.count is not None:
            assert task.status == Status.SUCCESSFUL, (task.pk, task.reason)
            assert task.log == exact_text(run.count), task.pk
            assert ended.get(task.pk) == [Status.SUCCESSFUL], (task.pk, ended.get(task.pk))
            kinds["printed"] += 1
        else:
            assert task.status == Status.CANCELLED, (task.pk, task.status, task.reason)
            if task.start_date is None:  # cancelled while scheduled, by the test process
                assert task.pk not in ended, (task.pk, ended[task.pk])
                kinds["cancelled while scheduled"] += 1
            else:  # cancelled by the daemon, which ended its process
                assert ended.get(task.pk) == [Status.CANCELLED], (task.pk, ended.get(task.pk))
                kinds["cancelled once started"] += 1
                pids = read_pids(Job.objects.get(pk=task.object_id).path)
                assert not any(pid_alive(pid) for pid in pids), (task.pk, pids)
    print(kinds)
    for trouble in ("Traceback", "unexpected error", "internal error", "no longer ours"):
        assert trouble not in daemon.log, daemon.log
