"""Many daemons on many hosts sharing one database server (hosts built from namespaces).

What SPEC §4 promises when daemons scale out: each task runs once; cancel reaches any host;
a dead or cut-off host's tasks are recovered by another, and a cut-off host stops its own
tasks before anybody may declare it lost (so two attempts never overlap); identity is not
hostname and pid (containers share both); heartbeats are judged by the database's clock (a
host's clock may be wrong); a short database outage costs no running task.

The tasks record from inside where and when they ran (tests/hosts_tasks.py): the test reads
those records and the database, never a daemon's word for it. Run with
``DJANGOTASKS_TEST_DB=postgres|mysql pytest -m slow tests/test_many_hosts.py`` as root.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from djangotasks.models import Task, Worker
from djangotasks.statuses import FINISHED, Status
from tests.hosts import ALIAS, Cluster, Host, cluster, hosts, process_alive, wait_for

__all__ = ["cluster", "hosts"]  # the fixtures, imported so that pytest finds them here

pytestmark = pytest.mark.slow

RETRIED = "tests.Job.hosts_tick_retried"


def fast(worker_timeout: float, heartbeat: float, **extra: str) -> dict[str, str]:
    return {
        "DJANGOTASKS_WORKER_TIMEOUT": str(worker_timeout),
        "DJANGOTASKS_HEARTBEAT": str(heartbeat),
        **extra,
    }


@dataclass(frozen=True)
class Record:
    """One line a task wrote (see tests/hosts_tasks.py)."""

    kind: str
    task: int
    attempt: int
    host: str
    namespace: str
    pid: int
    at: float


def records(path: Path) -> list[Record]:
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        kind, task, attempt, host, namespace, pid, at = line.split()
        found.append(Record(kind, int(task), int(attempt), host, namespace, int(pid), float(at)))
    return found


def first_record(path: Path, kind: str, **match: Any) -> Callable[[], Record | None]:
    def find() -> Record | None:
        for record in records(path):
            if record.kind == kind and all(getattr(record, k) == v for k, v in match.items()):
                return record
        return None

    return find


def tasks() -> Any:
    return Task.objects.using(ALIAS)


def workers() -> Any:
    return Worker.objects.using(ALIAS)


def finished(task_id: int, timeout: float = 60) -> Task:
    return wait_for(
        lambda: tasks().filter(pk=task_id, status__in=FINISHED).first(), timeout=timeout
    )


def create(host: Host, method: str, path: Path, seconds: float = 0, count: int = 1) -> list[int]:
    """On ``host``, create ``count`` jobs and run their task ``method``; the task ids."""
    out = host.client(
        f"""
        from tests.models import Job
        ids = []
        for _ in range({count}):
            job = Job.objects.create(path={str(path)!r}, seconds={seconds})
            ids.append(job.{method}().run().pk)
        print(*ids)
        """
    )
    return [int(i) for i in out.split()]


def assert_quiet(path: Path, seconds: float = 1.0) -> None:
    """Nothing appends to ``path`` for ``seconds`` (10 ticks of a live task)."""
    size = path.stat().st_size
    time.sleep(seconds)  # an observation window, not a wait for an event
    assert path.stat().st_size == size, records(path)[-3:]


def start_all(hosts_: list[Host], **kwargs: Any) -> None:
    """Start one daemon per host at once, then wait until every one is registered."""
    daemons = [h.start_daemon(wait=False, **kwargs) for h in hosts_]
    for daemon in daemons:
        daemon.wait_registered()


# -- each task once; cancel from anywhere ----------------------------------------------------


def test_three_hosts_run_200_tasks_once_each_and_cancel_crosses_hosts(
    cluster: Cluster, hosts: Callable[..., Host]
) -> None:
    group = [hosts(name) for name in ("alpha", "beta", "gamma")]
    start_all(group, concurrency=4, **fast(6, 1))
    ran = cluster.shared / "ran"

    ids = create(group[0], "hosts_record", ran, count=200)

    wait_for(lambda: tasks().filter(pk__in=ids, status__in=FINISHED).count() == 200, 180)
    statuses = Counter(tasks().filter(pk__in=ids).values_list("status", flat=True))
    assert statuses == {Status.SUCCESSFUL: 200}
    runs = [r for r in records(ran) if r.kind == "ran"]
    once = Counter(r.task for r in runs)
    assert set(once) == set(ids)
    assert [t for t, n in once.items() if n > 1] == []
    by_host = Counter(r.host for r in runs)
    assert len(by_host) > 1, by_host
    # The database says the same as the tasks: each ran on its worker's host.
    recorded = {r.task: r.host for r in runs}
    owners = dict(tasks().filter(pk__in=ids).values_list("pk", "worker__hostname"))
    assert owners == recorded

    long = cluster.shared / "long"
    (task_id,) = create(group[0], "hosts_tick", long)
    start = wait_for(first_record(long, "start"))
    runner = next(h for h in group if h.name == start.host)
    other = next(h for h in group if h is not runner)

    other.client(f"from djangotasks.models import Task\nTask.objects.get(pk={task_id}).cancel()")

    task = finished(task_id, timeout=30)
    assert task.status == Status.CANCELLED, task.reason
    assert not process_alive(start.namespace, start.pid)
    assert_quiet(long)
    assert all(d.running() for h in group for d in h.daemons)


# -- a host dies -----------------------------------------------------------------------------

# A dead daemon's task is recovered once the database's clock is WORKER_TIMEOUT past its last
# heartbeat, noticed at the next heartbeat of a live daemon (at most HEARTBEAT_INTERVAL later).
# RECOVERY_SLACK covers the rest: the queries of the recovery itself and the scheduling delays
# of a loaded 2-core machine (the three daemons, the server and pytest share it), about ten
# times what a round of those queries takes here.
RECOVERY_SLACK = 1.0


def test_task_of_a_dead_host_is_recovered_by_another_host(
    cluster: Cluster, hosts: Callable[..., Host]
) -> None:
    timeout, heartbeat = 5.0, 0.5
    victim, rescuer = hosts("victim"), hosts("rescuer")
    dying = victim.start_daemon(**fast(timeout, heartbeat))
    path = cluster.shared / "long"
    (task_id,) = create(victim, "hosts_tick", path)
    start = wait_for(first_record(path, "start"))
    assert start.host == "victim"
    rescuer.start_daemon(**fast(timeout, heartbeat))

    dying.kill()  # every process of its pid namespace at once; kill() waits for that

    assert not process_alive(start.namespace, start.pid)
    task = finished(task_id, timeout=3 * timeout + 10)
    assert task.status == Status.UNSUCCESSFUL
    assert task.reason.startswith("Worker lost"), task.reason
    lost = workers().get(pk=task.worker_id)
    assert lost.hostname == "victim"
    latency = (task.end_date - lost.last_seen).total_seconds()
    print(f"recovery latency (database timestamps): {latency:.2f} s")
    assert latency <= timeout + heartbeat + RECOVERY_SLACK
    assert_quiet(path)


# -- a host is cut off -----------------------------------------------------------------------


def test_cut_off_host_stops_its_attempt_before_the_retry_starts_elsewhere(
    cluster: Cluster, hosts: Callable[..., Host]
) -> None:
    settings = fast(5, 0.5)
    a, b = hosts("alpha"), hosts("beta")
    daemon_a = a.start_daemon(**settings)
    path = cluster.shared / "attempts"
    create(a, "hosts_tick_retried", path, seconds=2)
    first_start = wait_for(first_record(path, "start", attempt=1))
    assert first_start.host == "alpha"
    b.start_daemon(**settings)

    a.cut()
    try:
        retry = wait_for(
            lambda: (
                tasks().filter(name=RETRIED, archived=False, attempt=2, status__in=FINISHED).first()
            ),
            timeout=60,
        )
    finally:
        a.restore()
    restored_at = time.monotonic()

    assert retry.status == Status.SUCCESSFUL, retry.reason
    first = tasks().get(name=RETRIED, archived=True, attempt=1)
    assert first.status == Status.UNSUCCESSFUL
    assert first.reason.startswith("Worker lost"), first.reason
    found = records(path)
    last_of_first = max(r.at for r in found if r.attempt == 1)
    second_start = next(r for r in found if r.attempt == 2 and r.kind == "start")
    assert second_start.host == "beta"
    assert last_of_first < second_start.at, (
        f"attempt 1 on alpha was still alive {last_of_first - second_start.at:.2f} s after "
        f"attempt 2 started on beta"
    )
    assert not process_alive(first_start.namespace, first_start.pid)

    # Back on the network, A's daemon beats again (twice: it has seen what happened meanwhile)
    # and leaves the outcome recorded in its absence alone.
    outcome = (first.status, first.reason, first.end_date)
    beats: set[tuple[int, Any]] = set(
        a.workers().filter(stopped_at__isnull=True).values_list("pk", "last_seen")
    )
    for _ in range(2):

        def new_beat(seen: set[tuple[int, Any]] = beats) -> set[tuple[int, Any]]:
            now = set(a.workers().filter(stopped_at__isnull=True).values_list("pk", "last_seen"))
            return now - seen

        beats |= wait_for(new_beat, timeout=60)
    print(f"alpha beat again {time.monotonic() - restored_at:.1f} s after the link came back")
    assert daemon_a.running(), daemon_a.log
    first.refresh_from_db()
    assert (first.status, first.reason, first.end_date) == outcome
    retry.refresh_from_db()
    assert retry.status == Status.SUCCESSFUL


# -- identities and clocks -------------------------------------------------------------------


def test_hosts_with_the_same_hostname_and_pid_do_not_fence_each_other(
    cluster: Cluster, hosts: Callable[..., Host]
) -> None:
    twins = [hosts("twin"), hosts("twin")]
    # One task each: both daemons are pid 1 of their namespaces (Daemon.find_pid1 checks).
    start_all(twins, concurrency=1, **fast(4, 0.5))
    path = cluster.shared / "twins"

    ids = create(twins[0], "hosts_tick", path, seconds=20, count=2)

    ran = [finished(i, timeout=90) for i in ids]
    assert [t.status for t in ran] == [Status.SUCCESSFUL] * 2, [t.reason for t in ran]
    found = records(path)
    assert {r.task for r in found if r.kind == "end"} == set(ids)
    assert len({r.namespace for r in found if r.kind == "start"}) == 2  # one per host
    rows = list(workers().filter(hostname="twin").values_list("pk", "stopped_at"))
    assert len(rows) <= 2, rows
    assert [stopped for _pk, stopped in rows] == [None] * len(rows)
    assert all(d.running() for h in twins for d in h.daemons)


def test_a_restarting_twin_leaves_the_other_twins_tasks_alone(
    cluster: Cluster, hosts: Callable[..., Host]
) -> None:
    # The busy twin's daemon is not pid 1 of its namespace (an init shim is); the starting
    # one's namespace has no such pid when it registers. Taking "same host name, pid not
    # running here" for a dead predecessor killed the busy twin's task.
    settings = fast(4, 0.5)
    busy, starting = hosts("twin"), hosts("twin")
    busy.start_daemon(concurrency=1, as_pid1=False, **settings)
    path = cluster.shared / "twin"
    (task_id,) = create(busy, "hosts_tick", path, seconds=8)
    wait_for(first_record(path, "start"))

    starting.start_daemon(concurrency=1, **settings)

    task = finished(task_id, timeout=60)
    assert task.status == Status.SUCCESSFUL, task.reason
    rows = sorted(workers().filter(hostname="twin").values_list("pid", "stopped_at"))
    assert len(rows) == 2 and rows[0] == (1, None), rows
    assert rows[1][0] > 1 and rows[1][1] is None, rows


def test_a_host_whose_clock_is_a_minute_ahead_declares_nobody_lost(
    cluster: Cluster, hosts: Callable[..., Host]
) -> None:
    timeout = 4.0
    ahead, normal = hosts("ahead", faketime="+60s"), hosts("normal")
    start_all([ahead, normal], concurrency=1, **fast(timeout, 0.5))
    path = cluster.shared / "clocks"

    # Two tasks, one per daemon, each running for 3 x WORKER_TIMEOUT.
    ids = create(normal, "hosts_tick", path, seconds=3 * timeout, count=2)

    starts = wait_for(lambda: len(s := [r for r in records(path) if r.kind == "start"]) == 2 and s)
    skewed = next(r for r in starts if r.host == "ahead")
    assert skewed.at - time.time() > 50, "faketime did not shift the ahead host's clock"
    ran = [finished(i, timeout=6 * timeout + 30) for i in ids]
    assert [t.status for t in ran] == [Status.SUCCESSFUL] * 2, [t.reason for t in ran]
    assert not tasks().filter(reason__contains="Worker lost").exists()
    assert list(workers().exclude(stopped_at=None).values_list("hostname", "stopped_at")) == []
    assert {r.host for r in records(path) if r.kind == "end"} == {"ahead", "normal"}


# -- the database server goes away -----------------------------------------------------------


def test_a_database_outage_shorter_than_the_lease_costs_no_running_task(
    cluster: Cluster, hosts: Callable[..., Host]
) -> None:
    # Lease = WORKER_TIMEOUT - HEARTBEAT_INTERVAL = 7 s; the server is away for about 3 s.
    group = [hosts("alpha"), hosts("beta")]
    start_all(group, concurrency=1, **fast(8, 1))
    path = cluster.shared / "outage"
    ids = create(group[0], "hosts_tick", path, seconds=10, count=2)
    wait_for(lambda: len([r for r in records(path) if r.kind == "start"]) == 2)

    stopped_at = time.monotonic()
    cluster.stop_server()
    time.sleep(max(0.0, 3.0 - (time.monotonic() - stopped_at)))  # the outage itself
    cluster.start_server()
    print(f"database server away for {time.monotonic() - stopped_at:.1f} s")

    ran = [finished(i, timeout=90) for i in ids]
    assert [t.status for t in ran] == [Status.SUCCESSFUL] * 2, [t.reason for t in ran]
    assert {r.host for r in records(path) if r.kind == "end"} == {"alpha", "beta"}
    assert list(workers().exclude(stopped_at=None).values_list("hostname", "stopped_at")) == []
    assert all(d.running() for h in group for d in h.daemons)


# -- pid 1 ------------------------------------------------------------------------------------

SHUTDOWN_WAIT = 2.0
CANCEL_GRACE = 2.0  # tests/settings.py
# Time to start the shutdown, record the task's end and exit, on a loaded machine.
SHUTDOWN_SLACK = 5.0


def test_daemon_as_pid_1_shuts_down_and_leaves_no_process(
    cluster: Cluster, hosts: Callable[..., Host]
) -> None:
    host = hosts("lonely")
    daemon = host.start_daemon(**fast(6, 1, DJANGOTASKS_SHUTDOWN_WAIT=str(SHUTDOWN_WAIT)))
    path = cluster.shared / "long"
    (task_id,) = create(host, "hosts_tick", path)
    start = wait_for(first_record(path, "start"))

    began = time.monotonic()
    daemon.terminate()
    daemon.wait(timeout=SHUTDOWN_WAIT + CANCEL_GRACE + SHUTDOWN_SLACK)

    print(f"pid 1 stopped {time.monotonic() - began:.1f} s after SIGTERM")
    task = tasks().get(pk=task_id)
    assert task.status in {Status.CANCELLED, Status.SUCCESSFUL}, (task.status, task.reason)
    assert daemon.processes() == []
    assert not process_alive(start.namespace, start.pid)
