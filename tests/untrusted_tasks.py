"""Fixture tasks that send the daemon what task code can send: bad values, floods, escapes.

An abstract base of the ``Fault`` model (tests/faulty.py), so they need no migration; each
reads what it does from its ``Fault`` row (``count``, ``seconds``, ``path``).
"""

from __future__ import annotations

import os
import sys
import time

from django.db import models

from djangotasks import current_task, task
from tests.published import publish

# Characters of 1, 2, 3 and 4 UTF-8 bytes, and a line end: a log made of them tests that
# nothing is cut by bytes where characters are meant, or split inside a character.
PATTERN = "ab\u00e9\u20ac\U0001f600-0123456789 line of mixed width\n"


def exact_text(length: int) -> str:
    """The first ``length`` characters of PATTERN repeated: what ``print_exactly`` prints."""
    repeats = length // len(PATTERN) + 1
    return (PATTERN * repeats)[:length]


class UntrustedTasks(models.Model):
    """Tasks that send bad values, floods and escapes; ``Fault`` inherits them."""

    path: str
    seconds: float
    count: int

    class Meta:
        abstract = True

    @task
    def print_exactly(self) -> None:
        text = exact_text(self.count)
        # Odd-sized writes, so pipe reads split lines and characters anywhere.
        for start in range(0, len(text), 7919):
            sys.stdout.write(text[start : start + 7919])

    @task
    def fail_with_nul(self) -> None:
        print("about to fail with a NUL")
        raise ValueError("bad byte \x00 here")

    @task
    def fail_with_surrogate(self) -> None:
        print("about to fail with a lone surrogate")
        raise ValueError("lone \ud800 surrogate")

    @task
    def huge_progress(self) -> None:
        current_task.set_progress(2**70, 2**80, "big \x00 numbers \udc80")
        current_task.flush()
        print("still running after sending huge progress")
        time.sleep(self.seconds)

    @task
    def control_junk(self) -> None:
        """Write to the control pipe what a buggy or hostile task could."""
        fd = current_task._control_fd
        assert fd is not None
        junk = [
            b'{"progress": {"current": NaN, "total": Infinity, "message": "nan"}}\n',
            b'{"progress": {"current": 1e400, "total": -1e400}}\n',
            b"[" * 200_000 + b"\n",  # nested beyond the recursion limit
            b'{"progress": {"current": ' + b"9" * 5000 + b"}}\n",  # over int's digit limit
            b'{"reason": "\\u0000 nul and \\ud800 surrogate"}\n',
            b"\xff\xfe not json at all\n",
            b"x" * (3 * 1024 * 1024),  # 3 MB without a line end
            b"\n",
            b'{"progress": {"current": 3, "total": 4, "message": "after the junk"}}\n',
        ]
        for line in junk:
            os.write(fd, line)
        print("survived my own junk")
        raise RuntimeError("the reason in the control pipe must not replace this one")

    @task
    def emoji_flood(self) -> None:
        """Print ``count`` 4-byte characters (16 MiB of UTF-8 for 4 Mi of them), then a line."""
        block = "\U0001f600" * 65536
        for _ in range(self.count // 65536):
            sys.stdout.write(block)
        sys.stdout.write("\U0001f600" * (self.count % 65536))
        print("\ndone")

    @task
    def poison_output(self) -> None:
        print("clean line before")
        print("POISON: the database will refuse this line")
        print("clean line after")
        time.sleep(self.seconds)
        print("last line")

    @task
    def escape_by_fork(self) -> None:
        """A grandchild forked without exec that leaves the group with setsid(); pids to path."""
        pid = os.fork()
        if pid == 0:
            os.setsid()
            try:
                time.sleep(600)
            finally:
                os._exit(0)
        while os.getsid(pid) != pid:  # report it once it has left: tests check that it did
            time.sleep(0.001)
        publish(self.path, f"{os.getpid()} {pid}")
        print("forked", pid)
        time.sleep(self.seconds)

    @task
    def bad_progress_message(self) -> None:
        current_task.set_progress(1, 2, "boom")
        current_task.flush()
        print("sent a progress the daemon chokes on")
        time.sleep(self.seconds)
