"""Starting task processes (fork of the loaded daemon, or a fresh interpreter) and killing them."""

from __future__ import annotations

import codecs
import contextlib
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from djangotasks import conf
from djangotasks.daemon import child

if TYPE_CHECKING:
    from djangotasks.models import Task


@dataclass
class TaskProcess:
    """A task process this daemon started, and everything the daemon tracks about it."""

    task: Task
    pid: int
    output_fd: int
    control_fd: int
    started: float
    popen: subprocess.Popen[bytes] | None = None
    pidfd: int | None = None
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))
    control_buffer: bytes = b""
    # The latest progress the task reported, cleaned; saved at most every few tenths of a
    # second, however often the task reports.
    progress: dict[str, Any] | None = None
    progress_dirty: bool = False
    progress_saved_at: float = 0.0
    reason: str = ""
    # What the task's code raised, as Django's TaskError (class path, traceback), cleaned.
    error: dict[str, str] | None = None
    # Kinds of notes the daemon already wrote into this task's log (each is written once).
    noted: set[str] = field(default_factory=set)
    exit_status: int | None = None
    # Why the daemon is killing it ("cancelled", "timed out after 10 s", ...), and when the
    # SIGKILL is due if SIGTERM is not enough.
    kill_reason: str = ""
    kill_status: str = ""
    kill_error: type[BaseException] | None = None
    kill_deadline: float | None = None
    log_size: int | None = None
    output_closed: bool = False
    control_closed: bool = False

    @property
    def pgid(self) -> int:
        return self.pid  # every task process leads its own process group

    @property
    def exited(self) -> bool:
        return self.exit_status is not None

    def signal_group(self, sig: int) -> None:
        """Signal the task's whole process group (it and every descendant that stayed in it)."""
        try:
            os.killpg(self.pgid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            pass  # a descendant changed user; the rest of the group was still signalled


def _pipes() -> tuple[int, int, int, int]:
    output_r, output_w = os.pipe()
    try:
        control_r, control_w = os.pipe()
    except BaseException:
        _close(output_r, output_w)  # out of descriptors: give back the first pair
        raise
    os.set_blocking(output_r, False)
    os.set_blocking(control_r, False)
    return output_r, output_w, control_r, control_w


def fork(task: Task, keep: list[Any]) -> TaskProcess:
    """Fork the (single-threaded, Django-loaded) daemon into a task process: ~ms, not 300."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # or the child would inherit and print the parent's buffer again
    output_r, output_w, control_r, control_w = _pipes()
    parent = os.getpid()
    try:
        pid = os.fork()
    except BaseException:
        _close(output_r, output_w, control_r, control_w)  # EAGAIN under a pid limit: no leak
        raise
    if pid == 0:  # the task process: it leaves with os._exit below
        code = child.EXIT_CRASHED
        try:
            os.close(output_r)
            os.close(control_r)
            child.prepare_forked(output_w, task, keep, parent)
            code = child.execute(task, control_w)
        except BaseException:
            with contextlib.suppress(BaseException):
                traceback.print_exc()
        finally:
            os._exit(code)
    try:
        os.setpgid(pid, pid)  # closes the race with a kill sent before the child's setpgid
    except (PermissionError, ProcessLookupError):
        pass  # the child already did it (and maybe exec'ed or exited)
    _close(output_w, control_w)
    return TaskProcess(task, pid, output_r, control_r, time.monotonic())


def spawn(task: Task, worker_id: int) -> TaskProcess:
    """Start the task in a fresh interpreter: safe from a threaded parent (thread mode)."""
    output_r, output_w, control_r, control_w = _pipes()
    env = dict(os.environ)
    env[conf.TASK_ID_ENV] = str(task.pk)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    try:
        popen = subprocess.Popen(
            [sys.executable, "-m", "djangotasks.daemon.child", str(task.pk), str(worker_id),
             str(control_w)],
            stdin=subprocess.DEVNULL,
            stdout=output_w,
            stderr=output_w,
            pass_fds=(control_w,),
            start_new_session=True,
            env=env,
        )  # fmt: skip
    except BaseException:
        _close(output_r, control_r)  # the write ends are closed below
        raise
    finally:
        _close(output_w, control_w)
    process = TaskProcess(task, popen.pid, output_r, control_r, time.monotonic(), popen=popen)
    return process


def _close(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def describe_exit(status: int) -> tuple[bool, str]:
    """(succeeded, reason) for a ``waitpid`` status."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return False, f"Killed by {name}."
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return True, ""
    return False, f"Exited with status {code}."
