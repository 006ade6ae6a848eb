"""The catalogue of fixture tasks the tests run: each @task does one thing a test needs.

Tasks take no parameters, so what they do is read from the ``Job`` row: ``seconds``,
``text`` and ``path`` (a file the test and the task use to meet).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.db import models

from djangotasks import current_task, task
from tests.published import publish


def wait_for(path: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.01)


class Job(models.Model):
    seconds = models.FloatField(default=0)
    text = models.TextField(blank=True)
    path = models.CharField(max_length=500, blank=True)
    count = models.IntegerField(default=0)

    def __str__(self) -> str:
        return f"job {self.pk}"

    @task
    def noop(self) -> None:
        pass

    @task(label="Say hello")
    def hello(self) -> None:
        print(f"hello from job {self.pk}")
        assert current_task.is_running()
        assert current_task().pk == current_task.id

    @task
    def fail(self) -> None:
        print("about to fail")
        raise ValueError(f"bad row in job {self.pk}")

    @task
    def sleep(self) -> None:
        """Print, mark the path as started, then sleep ``seconds``."""
        print("sleeping", flush=False)
        if self.path:
            publish(self.path, str(os.getpid()))
        time.sleep(self.seconds)
        print("woke up")

    @task
    def unflushed(self) -> None:
        """Print without flushing, then wait for the test to say it saw the line."""
        sys.stdout.write("partial line without newline")
        sys.stdout.write("\rprogress 50%")
        wait_for(self.path)

    @task
    def progress(self) -> None:
        for i in range(1, self.count + 1):
            current_task.set_progress(i, self.count, f"step {i}")
        if self.path:
            wait_for(self.path)

    @task
    def counter(self) -> None:
        """Count how often it really ran (exactly-once tests): appends a line to ``path``."""
        with open(self.path, "a") as f:
            f.write(f"{self.pk}\n")

    @task
    def huge_output(self) -> None:
        line = "x" * 99 + "\n"
        for _ in range(self.count):
            sys.stdout.write(line)

    @task
    def invalid_utf8(self) -> None:
        os.write(1, b"before \xff\xfe invalid \xe2\x82")  # a character split across writes
        os.write(1, b"\xac after\n")  # ... completed here: a euro sign
        os.write(2, b"nul \x00 byte\n")

    @task
    def subprocess_output(self) -> None:
        subprocess.run(["sh", "-c", "echo from a shell; echo to stderr >&2"], check=True)
        os.system("echo from os.system")

    @task
    def logging_records(self) -> None:
        import logging

        logging.getLogger("tests.job").info("an info record")
        logging.getLogger("tests.job").warning("a warning record")

    @task
    def grandchild(self) -> None:
        """Start a long-lived grandchild; write its pid to ``path``; wait forever."""
        proc = subprocess.Popen(["sleep", "600"])
        publish(self.path, str(proc.pid))
        print("grandchild", proc.pid)
        time.sleep(600)

    @task
    def ignore_sigterm(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        publish(self.path, str(os.getpid()))
        print("ignoring SIGTERM")
        time.sleep(600)

    @task
    def escape(self) -> None:
        """A grandchild that leaves the process group with setsid; pid written to ``path``."""
        proc = subprocess.Popen(["sleep", "600"], start_new_session=True)
        publish(self.path, str(proc.pid))
        time.sleep(600)

    @task
    def exit_hard(self) -> None:
        print("leaving with os._exit(3)")
        os._exit(3)

    @task
    def close_output(self) -> None:
        print("closing my output now")
        os.close(1)
        os.close(2)
        time.sleep(0.1)

    @task(timeout=1)
    def too_slow(self) -> None:
        print("will time out")
        time.sleep(600)

    @task
    def step_one(self) -> None:
        print("step one of", self.pk)
        if self.text == "fail-one":
            raise RuntimeError("step one failed")
        if self.path:
            wait_for(self.path)

    @task(step_one)
    def step_two(self) -> None:
        print("step two of", self.pk)

    @task(step_two, label="Step three")
    def step_three(self) -> None:
        print("step three of", self.pk)


# The fault-injection suite's own fixture models and tasks live in their own module.
from tests.faulty import *  # noqa: E402, F403
from tests.visibility_models import *  # noqa: E402, F403
