"""The daemon's supervisor of task processes: starts, watches, kills and finishes them.

``Supervisor`` is an object the daemon owns: the loop in daemon.py, the queue in queue.py,
the processes here, and what a task sends in messages.py (a part of the supervisor).
What it needs of the daemon is passed in: the selector and log writer it shares, the
worker and the wake-up channel's descriptors per call (both change over the daemon's life),
and a callback for the lease watchdog, the one child of the daemon that is not a task.

Everything a task sends (output, progress, its reason) is untrusted: it is cleaned before
it is stored, and an unexpected error while handling one task ends that task, never the
daemon and the other tasks it runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from djangotasks import dberrors, signals
from djangotasks.daemon import linux
from djangotasks.daemon import process as processes
from djangotasks.daemon.messages import MAX_READS_AT_EXIT, TaskMessages
from djangotasks.daemon.process import TaskProcess
from djangotasks.exceptions import TaskCancelled, TaskCrashed, TaskFailed, TaskTimedOut
from djangotasks.logfields import fields, log_finished
from djangotasks.models import Task, transitions
from djangotasks.models.transitions import error_record
from djangotasks.statuses import Status
from djangotasks.untrusted import clean_text

if TYPE_CHECKING:
    from djangotasks.conf import TaskSettings
    from djangotasks.daemon.lease import Watchdog
    from djangotasks.daemon.logwriter import LogWriter
    from djangotasks.models import Worker

logger = logging.getLogger("djangotasks")

# kill_status of a process whose task row is gone (deleted, or ended by another daemon):
# nothing is recorded for it.
DELETED = "deleted"


class Supervisor(TaskMessages):
    def __init__(
        self,
        settings: TaskSettings,
        selector: selectors.BaseSelector,
        logs: LogWriter,
        *,
        use_fork: bool,
        thread_mode: bool,
        watchdog: Watchdog,
        watchdog_exited: Callable[[int], None],
    ) -> None:
        self.settings = settings
        self.selector = selector
        self.logs = logs
        self.use_fork = use_fork
        self.thread_mode = thread_mode
        self.watchdog = watchdog
        self.watchdog_exited = watchdog_exited
        self.processes: dict[int, TaskProcess] = {}  # pid -> a process that has not ended
        self.finishing: list[TaskProcess] = []  # ended; their end is not recorded yet

    @property
    def running(self) -> list[TaskProcess]:
        """The task processes that have not exited (a killed one may take a moment)."""
        return [proc for proc in self.processes.values() if not proc.exited]

    def start(self, task: Task, worker: Worker, keep: list[Any]) -> TaskProcess:
        """Start ``task``'s process; ``OSError`` if it cannot be started (nothing is left open).

        ``keep``: what a forked task must hold and never close (the wake-up channel's).
        """
        self.logs.open(task)
        try:
            proc = processes.fork(task, keep) if self.use_fork else processes.spawn(task, worker.pk)
        except BaseException:
            self.logs.discard(task.pk)
            raise
        self.processes[proc.pid] = proc
        task.pid = proc.pid  # stored for all tasks of a claim at once, by the queue
        logger.info("task #%s %s started (pid %s)", task.pk, task.name, proc.pid,
                    extra=fields("task_started", task, task_pid=proc.pid))  # fmt: skip
        # From here on the process is ours: whatever fails is contained to this task.
        self.contained(proc, self._watch, proc)
        return proc

    def _watch(self, proc: TaskProcess) -> None:
        # Each registration carries its process: an event costs no search among 100 tasks.
        self.selector.register(proc.output_fd, selectors.EVENT_READ, (self._read_output, proc))
        self.selector.register(proc.control_fd, selectors.EVENT_READ, (self._read_control, proc))
        if hasattr(os, "pidfd_open"):
            try:
                proc.pidfd = os.pidfd_open(proc.pid)
                self.selector.register(proc.pidfd, selectors.EVENT_READ, (self._on_exit, None))
            except OSError:
                proc.pidfd = None
        if proc.task.status == Status.REQUESTED_CANCEL:
            self.kill(proc, "Cancelled.", Status.CANCELLED)
        if signals.task_started.has_listeners():
            _send(signals.task_started, "task_started", proc.task)
        if proc.task.is_django_task:
            results().send_started(proc.task)

    def contained(self, proc: TaskProcess, action: Callable[..., Any], *args: Any) -> None:
        """Do one piece of work for one task; an unexpected error ends that task only.

        Database outages are not the task's fault: they go up, to be waited out.
        """
        try:
            action(*args)
        except Exception as exc:
            if dberrors.is_outage(exc):
                raise
            self._internal_error(proc, exc)

    def _internal_error(self, proc: TaskProcess, exc: BaseException) -> None:
        task = proc.task
        logger.error("taskd: internal error while handling task #%s; stopping it", task.pk,
                     exc_info=exc, extra=fields("task_internal_error", task))  # fmt: skip
        summary, _ = clean_text(f"{type(exc).__name__}: {exc}", 500, "the error")
        trace, _ = clean_text("".join(traceback.format_exception(exc)), 20000, "the traceback")
        self.logs.note(task.pk, f"internal error in the daemon; the task was stopped.\n{trace}")
        reason = f"Internal error in the daemon: {summary} (the traceback is in the log)."
        self.kill(proc, reason, Status.UNSUCCESSFUL, grace=0, error=TaskCrashed)

    def save_progress(self, now: float) -> None:
        """Store the progress the tasks reported, each at most every few tenths of a second."""
        for proc in list(self.processes.values()):
            self.contained(proc, self._save_progress, proc, now)

    # -- exits ---------------------------------------------------------------------------

    def _on_exit(self) -> None:
        """A pidfd became readable: the loop reaps after every select (``reap``)."""

    def reap(self) -> bool:
        """Collect the exits of our children; True if a task process ended."""
        ended = len(self.finishing)
        if self.thread_mode:
            for proc in list(self.processes.values()):
                try:
                    pid, status = os.waitpid(proc.pid, os.WNOHANG)
                except ChildProcessError:
                    continue
                if pid:
                    self.contained(proc, self._exited, proc, status)
            return len(self.finishing) > ended
        # We are a subreaper: orphans of task processes are reparented to us. Reap them.
        reaped = False
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            reaped = True
            if pid in self.processes:
                self.contained(self.processes[pid], self._exited, self.processes[pid], status)
            elif pid == self.watchdog.pid:
                self.watchdog_exited(status)
        if reaped:
            self._kill_orphans()
        return len(self.finishing) > ended

    def _kill_orphans(self) -> None:
        """Kill every child of ours that is not a task process: a task left it behind.

        A task process is a subreaper, so while it runs its descendants stay in its tree,
        even those that left its process group with setsid() (forked with or without exec).
        Only when it exits are they reparented to us, the next subreaper up. A child of the
        daemon that is neither a task process nor the lease watchdog is therefore always
        what an ended task left. Their own orphans come to us in turn when they die, and are
        killed on the next reap.
        """
        own_group = os.getpgrp()
        for pid in linux.children(os.getpid()):
            if pid in self.processes or pid == self.watchdog.pid:
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                group = os.getpgid(pid)
                # A process may have joined our group or a running task's (setpgid within
                # the session): then only it is killed, never the daemon or another task.
                if group != own_group and group not in self.processes:
                    os.killpg(group, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def _exited(self, proc: TaskProcess, status: int) -> None:
        proc.exit_status = status
        if proc.popen is not None:
            proc.popen.returncode = os.waitstatus_to_exitcode(status)
        del self.processes[proc.pid]
        self.finishing.append(proc)
        # Whatever the task left in its group dies with it; its output is read to the end.
        proc.signal_group(signal.SIGKILL)
        if proc.pidfd is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(proc.pidfd)
            os.close(proc.pidfd)
            proc.pidfd = None
        self._read_output(proc, MAX_READS_AT_EXIT)
        self._read_control(proc, MAX_READS_AT_EXIT)

    def finish(self, proc: TaskProcess, worker: Worker) -> None:
        """Store the rest of the log, then the final status: a final status means a full log."""
        assert proc.exit_status is not None
        for which in ("output", "control"):
            if not getattr(proc, f"{which}_closed"):
                self._close_fd(proc, which)  # an escaped descendant may hold it open
        task = proc.task
        if proc.kill_status == DELETED or task.pk in self.logs.orphaned:
            self.logs.discard(task.pk)
            self.logs.orphaned.discard(task.pk)
            logger.info("task #%s %s: its row is gone; nothing recorded", task.pk, task.name,
                        extra=fields("task_row_gone", task))  # fmt: skip
            return
        self._save_progress(proc, time.monotonic(), force=True)
        if proc.log_size is None:  # a retry after a database error must not close twice
            proc.log_size = self.logs.close(task.pk)
        size = proc.log_size
        status, reason, error = _outcome(proc)
        if transitions.finish(task, worker, status, reason, log_size=size, error=error):
            if signals.task_completed.has_listeners():
                _send(signals.task_completed, "task_completed", task)
            if task.is_django_task:
                results().send_finished(task)
            log_finished(task)
            return
        # Not "task_finished": whoever took the row over ended it (and logged that end).
        logger.warning("taskd: task #%s was no longer ours when it ended", task.pk,
                       extra=fields("task_not_ours", task))  # fmt: skip
        logger.info("task #%s %s %s%s", task.pk, task.name, status, f": {reason}" if reason else "",
                    extra=fields("task_exited", task))  # fmt: skip

    def finish_despite(self, proc: TaskProcess, worker: Worker, exc: Exception) -> None:
        """Backstop for ``finish``: record the end with a plain reason, or leave it to recovery."""
        task = proc.task
        logger.error("taskd: could not record the end of task #%s", task.pk, exc_info=exc,
                     extra=fields("task_end_not_recorded", task))  # fmt: skip
        self.logs.discard(task.pk)
        reason = (
            f"The daemon could not record how this task ended ({type(exc).__name__}); "
            "see the daemon's log."
        )
        try:
            recorded = transitions.finish(task, worker, Status.UNSUCCESSFUL, reason)
        except Exception as again:
            if dberrors.is_outage(again):
                raise
            # Left running on this worker: the phantom check ends it with a fixed reason.
            logger.error("taskd: task #%s stays running for recovery: %s", task.pk, again,
                         extra=fields("task_left_for_recovery", task))  # fmt: skip
            return
        if recorded:
            log_finished(task)

    def kill(
        self,
        proc: TaskProcess,
        reason: str,
        status: str,
        grace: float | None = None,
        error: type[BaseException] | None = None,
    ) -> None:
        """Kill a task's group (SIGTERM, SIGKILL after ``grace``); it ends with ``status``.

        ``error``: the class path the task's error gets (a cancel is TaskCancelled).
        """
        if proc.kill_reason and grace != 0:
            return
        proc.kill_reason, proc.kill_status, proc.kill_error = reason, status, error
        if proc.exited:
            return  # nothing left to signal; the pid may already belong to someone else
        if grace == 0:
            proc.signal_group(signal.SIGKILL)
            proc.kill_deadline = None
            return
        proc.signal_group(signal.SIGTERM)
        proc.kill_deadline = time.monotonic() + (
            self.settings.CANCEL_GRACE if grace is None else grace
        )

    def kill_all(self, reason: str, status: str, error: type[BaseException] | None = None) -> None:
        """Kill every running task at once (SIGKILL): the daemon stops now, or lost its lease."""
        for proc in self.running:
            self.kill(proc, reason, status, grace=0, error=error)

    def enforce_limits(self, now: float, shutdown_deadline: float | None) -> None:
        """SIGKILL after a cancel's grace; timeouts; the end of a graceful shutdown's wait."""
        for proc in list(self.processes.values()):
            if proc.exited:
                continue
            if proc.kill_deadline is not None and now >= proc.kill_deadline:
                proc.signal_group(signal.SIGKILL)
                proc.kill_deadline = None
                continue
            definition = proc.task.definition
            timeout = (definition.timeout if definition else None) or self.settings.DEFAULT_TIMEOUT
            if timeout and now - proc.started > timeout and not proc.kill_reason:
                reason = f"Timed out after {timeout:g} s."
                self.kill(proc, reason, Status.UNSUCCESSFUL, error=TaskTimedOut)
            if shutdown_deadline is not None and now >= shutdown_deadline:
                self.kill(proc, "Cancelled: the daemon was shut down.", Status.CANCELLED)


def _outcome(proc: TaskProcess) -> tuple[str, str, dict[str, str] | None]:
    """How a task ended: its status, reason, and error (as Django's TaskError)."""
    if proc.kill_status:
        status, reason = proc.kill_status, proc.kill_reason
        cls = proc.kill_error or (TaskCancelled if status == Status.CANCELLED else TaskFailed)
        return status, reason, error_record(cls, reason)
    assert proc.exit_status is not None
    ok, exit_reason = processes.describe_exit(proc.exit_status)
    if ok:
        return Status.SUCCESSFUL, proc.reason, None
    reason = proc.reason or exit_reason
    # Without a reason from the task, its process died of a signal or an exit of its own.
    error = proc.error or error_record(TaskFailed if proc.reason else TaskCrashed, reason)
    return Status.UNSUCCESSFUL, reason, error


def results() -> Any:
    """``djangotasks.results``, imported when a Django task is met (it needs Django >= 6)."""
    from djangotasks import results

    return results


def _send(signal: Any, name: str, task: Task) -> None:
    """Send ``task_started``/``task_completed``; a failing receiver is logged, not fatal."""
    for receiver, result in signal.send_robust(Task, task=task, object=task.target):
        if isinstance(result, Exception):
            logger.error("%s receiver %r failed for task #%s", name, receiver, task.pk,
                         exc_info=result,
                         extra=fields("receiver_failed", task, signal=name))  # fmt: skip
