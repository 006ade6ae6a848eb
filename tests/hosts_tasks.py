"""Tasks for the many-hosts tests (tests/test_many_hosts.py): they record, from inside, where
and when they ran.

Tasks take no parameters, and one live row exists per (task, object), so a test that needs
200 distinct tasks needs 200 objects: these tasks are registered as methods of the catalogue's
``Job`` model (``seconds`` and ``path`` are their inputs). They are registered here rather
than in tests/models.py so that only the processes of the hosts import them (each host's
daemon and clients import this module after ``django.setup()``); the rest of the suite never
sees them.

Every record is one line appended with one ``write()`` to ``Job.path`` (a file on the
filesystem all hosts share; appends under PIPE_BUF bytes never interleave):

    KIND TASK_ID ATTEMPT HOSTNAME PID_NAMESPACE PID TIME

``PID_NAMESPACE`` and ``PID`` (as seen inside that namespace) name the process from any
namespace: tests/hosts.py finds it in the root namespace by the pair. ``TIME`` is
``time.time()``: the same kernel clock on every host, except where faketime shifts it.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any

from djangotasks import current_task
from djangotasks.decorators import TaskMethod
from djangotasks.registry import TaskDefinition, registry
from tests.models import Job

TICK = 0.1


def _job_task(**options: Any) -> Callable[[Callable[[Job], None]], TaskMethod]:
    """Register ``func`` as the @task method ``Job.<name>`` (``job.<name>().run()``)."""

    def register(func: Callable[[Job], None]) -> TaskMethod:
        name = func.__name__
        registry.register(
            TaskDefinition(
                name=f"{Job._meta.label}.{name}",
                func=func,
                label=name.replace("_", " ").capitalize(),
                model=Job,
                attname=name,
                **options,
            )
        )
        method = TaskMethod(func, (), options)
        setattr(Job, name, method)
        return method

    return register


def _record(job: Job, kind: str) -> None:
    line = " ".join(
        [
            kind,
            str(current_task.id),
            str(current_task().attempt),
            socket.gethostname(),
            os.readlink("/proc/self/ns/pid").removeprefix("pid:[").removesuffix("]"),
            str(os.getpid()),
            f"{time.time():.3f}",
        ]
    )
    fd = os.open(job.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _tick_for(job: Job, seconds: float) -> None:
    """Record ``start``, then ``alive`` every TICK for ``seconds``, then ``end``."""
    _record(job, "start")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(TICK)
        _record(job, "alive")
    _record(job, "end")


@_job_task()
def hosts_record(self: Job) -> None:
    """A short task: records one ``ran`` line."""
    _record(self, "ran")


@_job_task()
def hosts_tick(self: Job) -> None:
    """Ticks for ``seconds`` (0: until it is killed)."""
    _tick_for(self, self.seconds or 3600)


@_job_task(retries=1, retry_delay=0.1)
def hosts_tick_retried(self: Job) -> None:
    """The first attempt ticks until it is killed; a retry ticks for ``seconds``."""
    _tick_for(self, 3600 if current_task().attempt == 1 else self.seconds)
