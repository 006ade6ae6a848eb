"""The daemon's lease on its tasks, and the watchdog process that enforces it.

Other daemons declare a daemon lost after WORKER_TIMEOUT without a heartbeat (by the
database's clock) and may then start a task's next attempt. So that two attempts never
overlap, a daemon stops its own tasks sooner: when it has not renewed its heartbeat for
the lease, WORKER_TIMEOUT minus one heartbeat interval. The lease is counted from the moment
a successful heartbeat was *sent*, which is no later than the database's clock reading it
stored, so with clocks that run at the same rate the lease always ends first.

The daemon checks its lease in its loop, but its loop can be stuck: in a query to a
database that a partition made unreachable (TCP waits minutes before it gives up), or
frozen (SIGSTOP, a VM paused). A watchdog process forked at start, which never touches the
database, therefore holds a copy of the lease and of the task process groups, and kills
those groups itself when the lease runs out.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time

from djangotasks.daemon import linux

# The state the daemon sends: "<lease end, monotonic seconds> <pgid> <pgid> ...\n". The
# whole state each time, so a message lost to a full pipe is repaired by the next one.
_MAX_MESSAGE = 65536


def lease_seconds(worker_timeout: float, heartbeat_interval: float) -> float:
    """How long a daemon may go without a heartbeat before it stops its own tasks."""
    return worker_timeout - heartbeat_interval


class Watchdog:
    """The daemon's side: fork the watchdog, tell it the lease's end and the task groups."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self._write_fd: int | None = None
        self._sent: tuple[float, tuple[int, ...]] | None = None

    def start(self) -> None:
        read_fd, write_fd = os.pipe()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the watchdog: SIGKILLed at the stop, it saves no data
            code = 1
            try:
                os.close(write_fd)
                _run(read_fd)
                code = 0
            finally:
                os._exit(code)
        os.close(read_fd)
        os.set_blocking(write_fd, False)
        self.pid = pid
        self._write_fd = write_fd
        self._sent = None

    def update(self, lease_end: float, groups: tuple[int, ...]) -> None:
        """Send the state if it changed. Never blocks: a full pipe means the next update."""
        if self._write_fd is None or self._sent == (lease_end, groups):
            return
        message = " ".join([repr(lease_end), *map(str, groups)]).encode() + b"\n"
        try:
            os.write(self._write_fd, message)
        except (BlockingIOError, BrokenPipeError):
            return
        self._sent = (lease_end, groups)

    def exited(self) -> None:
        """The watchdog was reaped (it died): forget it; the daemon starts another."""
        self.pid = None
        self.close()

    def close(self) -> None:
        if self._write_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._write_fd)
            self._write_fd = None


def _run(read_fd: int) -> None:  # pragma: no cover - the watchdog (see start())
    """The watchdog: kill the task groups when the lease ends; leave when the daemon does."""
    parent = os.getppid()
    linux.set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent:
        return
    # Own nothing of the daemon's: a socket held open here would keep a closed database
    # connection alive on the server, a pipe would hide a task's end of output.
    os.closerange(3, read_fd)
    os.closerange(read_fd + 1, os.sysconf("SC_OPEN_MAX"))
    # The daemon's handlers and wake-up pipe came with the fork: not ours. A ^C reaches the
    # daemon's whole group; the daemon decides, and closes our pipe when it is done.
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    lease_end: float | None = None
    groups: list[int] = []
    buffer = b""
    while True:
        timeout = None if lease_end is None or not groups else lease_end - time.monotonic()
        if timeout is not None and timeout <= 0:
            with contextlib.suppress(OSError):  # a closed stderr must not stop the kill
                os.write(2, _expired_message(groups))
            for group in groups:
                with contextlib.suppress(OSError):
                    os.killpg(group, signal.SIGKILL)
            groups = []  # until the daemon says what runs now
            continue
        ready, _, _ = select.select([read_fd], [], [], timeout)
        if not ready:
            continue
        data = os.read(read_fd, _MAX_MESSAGE)
        if not data:
            return  # the daemon is gone
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        if lines:
            lease_end, groups = _parse(lines[-1])
        if len(buffer) > _MAX_MESSAGE:
            buffer = b""  # no line of the daemon's is that long: junk from a task


def _parse(line: bytes) -> tuple[float | None, list[int]]:
    """The daemon's last message; anything else (task processes inherit the pipe and may
    write to any descriptor) leaves nothing to kill rather than a wrong group."""
    try:
        lease_end, *groups = (float(part) for part in line.split())
    except ValueError:
        return None, []
    if not all(value.is_integer() and 1 < value < 2**31 for value in groups):
        return None, []
    return lease_end, [int(value) for value in groups]


def _expired_message(groups: list[int]) -> bytes:
    text = (
        f"taskd watchdog: the daemon's lease ran out (no heartbeat recorded in time); "
        f"killed task process group(s) {', '.join(map(str, groups))}\n"
    )
    return text.encode()
