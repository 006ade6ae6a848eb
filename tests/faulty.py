"""Fixture models and tasks for the fault-injection suite (tests/test_faults_*.py).

Each @task misbehaves in one way a real task can. What it does is read from its ``Fault``
row: ``path`` (a file the test and the task use to meet: pids, attempts), ``seconds`` and
``count``.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.db import models

from djangotasks import current_task, task
from tests.published import publish
from tests.untrusted_tasks import UntrustedTasks

__all__ = ["Fault"]  # what tests/models.py re-exports

MB = 1024 * 1024
# Memory limits are address space (RLIMIT_AS): a task forked from a daemon that has loaded
# Django and a database driver already maps a few hundred MB, so the limit must be above it.
MEMORY_LIMIT = 1024 * MB


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Fault(UntrustedTasks):
    path = models.CharField(max_length=500, blank=True)
    seconds = models.FloatField(default=0)
    count = models.IntegerField(default=0)

    def __str__(self) -> str:
        return f"fault {self.pk}"

    def _write(self, text: str) -> None:
        if self.path:
            publish(self.path, text)

    @task
    def segfault(self) -> None:
        print("about to dereference NULL")
        ctypes.string_at(0)

    @task(memory_limit=MEMORY_LIMIT)
    def eat_memory(self) -> None:
        """Allocate (and touch) memory until the memory limit stops it."""
        print("eating memory")
        chunks = []
        while True:
            chunks.append(bytearray(b"x" * (32 * MB)))

    @task
    def eat_memory_no_limit(self) -> None:
        """Like ``eat_memory`` but without a limit of its own: DEFAULT_MEMORY_LIMIT applies."""
        print("eating memory")
        chunks = []
        for _ in range(self.count or 1000):
            chunks.append(bytearray(b"x" * (32 * MB)))
        print("survived", len(chunks))

    @task
    def print_megabytes(self) -> None:
        """Print ``count`` MB of numbered 100-byte lines, as fast as it can."""
        number = 0
        for _ in range(self.count):
            block = []
            for _ in range(MB // 100):
                block.append(f"{number:010d}" + "y" * 89 + "\n")
                number += 1
            sys.stdout.write("".join(block))
        print(f"done: {number} lines")

    @task
    def silent(self) -> None:
        """Never prints anything; sleeps ``seconds``."""
        self._write(str(os.getpid()))
        time.sleep(self.seconds)

    @task
    def escape_then_exit(self) -> None:
        """Leave a grandchild in its own session (setsid) behind, then succeed."""
        proc = subprocess.Popen(["sleep", "600"], start_new_session=True)
        self._write(str(proc.pid))
        print("left", proc.pid, "behind")

    @task
    def family(self) -> None:
        """A task process with a grandchild in its group and one that escaped it (setsid)."""
        stays = subprocess.Popen(["sleep", "600"])
        escapes = subprocess.Popen(["sleep", "600"], start_new_session=True)
        self._write(f"{os.getpid()} {stays.pid} {escapes.pid}")
        print("family started")
        time.sleep(600)

    @task(timeout=1)
    def slow_with_grandchild(self) -> None:
        proc = subprocess.Popen(["sleep", "600"])
        self._write(f"{os.getpid()} {proc.pid}")
        print("will time out")
        time.sleep(600)

    @task(timeout=1)
    def slow_and_stubborn(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self._write(str(os.getpid()))
        print("ignoring SIGTERM and timing out")
        time.sleep(600)

    @task(retries=2, retry_delay=0.2)
    def flaky(self) -> None:
        """Fails its first ``count`` attempts, then succeeds; appends each attempt to ``path``."""
        with open(self.path, "a") as f:
            f.write(f"{current_task.attempt}\n")
        if current_task.attempt <= self.count:
            raise RuntimeError(f"attempt {current_task.attempt} failed")
        print("succeeded at attempt", current_task.attempt)

    @task(retries=1, retry_delay=0.1)
    def hopeless(self) -> None:
        raise RuntimeError(f"attempt {current_task.attempt} failed")

    @task(retries=1, retry_delay=0.1)
    def survivor(self) -> None:
        """Retried after worker loss: notes ``attempt pid overlap`` in ``path``.

        The first attempt waits forever (its daemon gets killed); later ones succeed. A
        process of an earlier attempt still alive when a later one starts is an overlap.
        """
        earlier = Path(self.path).read_text().split("\n") if os.path.exists(self.path) else []
        overlap = any(_alive(int(line.split()[1])) for line in earlier if line.strip())
        with open(self.path, "a") as f:
            f.write(f"{current_task.attempt} {os.getpid()} {int(overlap)}\n")
        print("attempt", current_task.attempt)
        if current_task.attempt == 1:
            time.sleep(600)

    @task("flaky")
    def after_flaky(self) -> None:
        print("after flaky")

    @task
    def steady(self) -> None:
        """Print numbered lines steadily, ``count`` lines ``seconds`` apart."""
        for i in range(self.count):
            print(f"line {i} of task {current_task.id}")
            time.sleep(self.seconds)
        self._write("done")


# A daemon started with this variable set stands for a deploy that removed the task's code
# while a run of it was scheduled.
REMOVE_CODE_ENV = "DJANGOTASKS_TEST_CODE_REMOVED"
if os.environ.get(REMOVE_CODE_ENV) != "1":

    @task
    def vanishing() -> None:
        print("should not run where its code was removed")


# -- helpers for the fault tests (kept here: conftest.py belongs to the harness) ---------

ROOT = Path(__file__).resolve().parent.parent
_settings_counter = itertools.count(1)


def settings_env(directory: Path, **overrides: Any) -> dict[str, str]:
    """Environment for ``start_daemon(**env)``: tests.settings with DJANGOTASKS overrides.

    The daemon reads its settings at start, so a setting a test needs (DEFAULT_TIMEOUT,
    DEFAULT_MEMORY_LIMIT, MAX_LOG_SIZE, ...) goes into a throwaway settings module.
    """
    name = f"fault_settings_{os.getpid()}_{next(_settings_counter)}"
    (directory / f"{name}.py").write_text(
        "from tests.settings import *  # noqa: F403\n"
        f"DJANGOTASKS = {{**DJANGOTASKS, **{overrides!r}}}  # noqa: F405\n"
    )
    return {"DJANGO_SETTINGS_MODULE": name, "PYTHONPATH": f"{ROOT}{os.pathsep}{directory}"}


def read_pids(path: str | Path) -> list[int]:
    """The pids a fixture task wrote to ``path`` (empty until it wrote them)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    return [int(word) for word in text.split()]
