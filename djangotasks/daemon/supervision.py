"""The half of the daemon that starts, watches, kills and finishes task processes.

``Supervision`` is a part of ``Daemon`` (its base class), kept in a module of its own: the
loop and the queue in daemon.py, the processes here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import signal
import time
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import InterfaceError, OperationalError

from djangotasks import conf, signals
from djangotasks.daemon import linux
from djangotasks.daemon import process as processes
from djangotasks.daemon.process import TaskProcess
from djangotasks.models import Task, transitions
from djangotasks.statuses import Status

if TYPE_CHECKING:
    from djangotasks.conf import TaskSettings
    from djangotasks.daemon.logwriter import LogWriter
    from djangotasks.models import Worker
    from djangotasks.notify import PostgresListener

logger = logging.getLogger("djangotasks")

DB_ERRORS = (OperationalError, InterfaceError)
READ_SIZE = 65536
# kill_status of a process whose task row is gone (deleted, or ended by another daemon):
# nothing is recorded for it.
DELETED = "deleted"


class Supervision:
    # Provided by Daemon.
    settings: TaskSettings
    selector: selectors.BaseSelector
    processes: dict[int, TaskProcess]
    finishing: list[TaskProcess]
    logs: LogWriter
    worker: Worker | None
    listener: PostgresListener | None
    use_fork: bool
    thread_mode: bool
    look_needed: bool
    stopping: bool
    shutdown_deadline: float | None

    def _start(self, task: Task) -> None:
        assert self.worker is not None
        self.logs.open(task)
        try:
            if self.use_fork:
                keep = [self.listener] if self.listener is not None else []
                proc = processes.fork(task, keep)
            else:
                proc = processes.spawn(task, self.worker.pk)
        except OSError as exc:
            logger.error("taskd: could not start task #%s: %s", task.pk, exc)
            self.logs.discard(task.pk)
            transitions.finish(task, self.worker, Status.UNSUCCESSFUL, f"Could not start: {exc}")
            return
        self.processes[proc.pid] = proc
        # Each registration carries its process: an event costs no search among 100 tasks.
        self.selector.register(
            proc.output_fd, selectors.EVENT_READ, lambda key, p=proc: self._read_output(p)
        )
        self.selector.register(
            proc.control_fd, selectors.EVENT_READ, lambda key, p=proc: self._read_control(p)
        )
        if hasattr(os, "pidfd_open"):
            try:
                proc.pidfd = os.pidfd_open(proc.pid)
                self.selector.register(proc.pidfd, selectors.EVENT_READ, self._on_exit)
            except OSError:
                proc.pidfd = None
        task.pid = proc.pid  # stored for all tasks of a claim at once, by _look()
        if task.status == Status.REQUESTED_CANCEL:
            self._kill(proc, "Cancelled.", Status.CANCELLED)
        if signals.task_started.has_listeners():
            signals.task_started.send(Task, task=task, object=task.target)

    def _read_output(self, proc: TaskProcess) -> None:
        if proc.output_closed:
            return
        while True:
            try:
                data = os.read(proc.output_fd, READ_SIZE)
            except BlockingIOError:
                return
            if not data:
                self.logs.append(proc.task.pk, proc.decoder.decode(b"", final=True))
                self._close_fd(proc, "output")
                return
            self.logs.append(proc.task.pk, proc.decoder.decode(data))

    def _read_control(self, proc: TaskProcess) -> None:
        if proc.control_closed:
            return
        while True:
            try:
                data = os.read(proc.control_fd, READ_SIZE)
            except BlockingIOError:
                break
            if not data:
                self._close_fd(proc, "control")
                break
            proc.control_buffer += data
        *lines, proc.control_buffer = proc.control_buffer.split(b"\n")
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                continue  # a task can write anything to its own pipe; ignore junk
            if isinstance(message, dict):
                if isinstance(message.get("progress"), dict):
                    proc.progress = message["progress"]
                    self._save_progress(proc)
                if isinstance(message.get("reason"), str):
                    proc.reason = message["reason"][:2000]

    def _save_progress(self, proc: TaskProcess) -> None:
        progress = proc.progress or {}
        try:
            current = int(progress.get("current") or 0)
            total = progress.get("total")
            total = None if total is None else int(total)
        except (TypeError, ValueError):
            return
        fields = {
            "progress_current": current,
            "progress_total": total,
            "progress_message": str(progress.get("message", ""))[:255],
        }
        try:
            Task.objects.filter(pk=proc.task.pk).update(**fields)
        except DB_ERRORS:
            pass  # the final progress is written again when the task finishes
        for name, value in fields.items():
            setattr(proc.task, name, value)

    def _close_fd(self, proc: TaskProcess, which: str) -> None:
        fd = proc.output_fd if which == "output" else proc.control_fd
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(fd)
        os.close(fd)
        setattr(proc, f"{which}_closed", True)

    def _on_exit(self, key: selectors.SelectorKey) -> None:
        self._reap()

    def _reap(self) -> None:
        if not self.thread_mode:
            # We are a subreaper: orphans of task processes are reparented to us. Reap them.
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                if pid in self.processes:
                    self._exited(self.processes[pid], status)
        else:
            for proc in list(self.processes.values()):
                try:
                    pid, status = os.waitpid(proc.pid, os.WNOHANG)
                except ChildProcessError:
                    continue
                if pid:
                    self._exited(proc, status)

    def _exited(self, proc: TaskProcess, status: int) -> None:
        proc.exit_status = status
        if proc.popen is not None:
            proc.popen.returncode = os.waitstatus_to_exitcode(status)
        # Whatever the task left in its group dies with it; its output is read to the end.
        proc.signal_group(signal.SIGKILL)
        _kill_escaped(proc.task.pk)
        self._read_output(proc)
        self._read_control(proc)
        if proc.pidfd is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(proc.pidfd)
            os.close(proc.pidfd)
            proc.pidfd = None
        del self.processes[proc.pid]
        self.finishing.append(proc)
        self.look_needed = True

    def _finish(self, proc: TaskProcess) -> None:
        """Store the rest of the log, then the final status: a final status means a full log."""
        assert self.worker is not None
        assert proc.exit_status is not None
        for which in ("output", "control"):
            if not getattr(proc, f"{which}_closed"):
                self._close_fd(proc, which)  # an escaped descendant may hold it open
        task = proc.task
        if proc.kill_status == DELETED or task.pk in self.logs.orphaned:
            self.logs.discard(task.pk)
            self.logs.orphaned.discard(task.pk)
            logger.info("task #%s %s: its row is gone; nothing recorded", task.pk, task.name)
            return
        if proc.log_size is None:  # a retry after a database error must not close twice
            proc.log_size = self.logs.close(task.pk)
        size = proc.log_size
        if proc.kill_status:
            status, reason = proc.kill_status, proc.kill_reason
        else:
            ok, exit_reason = processes.describe_exit(proc.exit_status)
            status = Status.SUCCESSFUL if ok else Status.UNSUCCESSFUL
            reason = proc.reason or exit_reason
        if transitions.finish(task, self.worker, status, reason, log_size=size):
            if signals.task_completed.has_listeners():
                signals.task_completed.send(Task, task=task, object=task.target)
        else:
            logger.warning("taskd: task #%s was no longer ours when it ended", task.pk)
        logger.info("task #%s %s %s%s", task.pk, task.name, status, f": {reason}" if reason else "")

    def _kill(
        self, proc: TaskProcess, reason: str, status: str, grace: float | None = None
    ) -> None:
        if proc.kill_reason and grace != 0:
            return
        proc.kill_reason, proc.kill_status = reason, status
        if grace == 0:
            proc.signal_group(signal.SIGKILL)
            proc.kill_deadline = None
            return
        proc.signal_group(signal.SIGTERM)
        proc.kill_deadline = time.monotonic() + (
            self.settings.CANCEL_GRACE if grace is None else grace
        )

    def _enforce_limits(self, now: float) -> None:
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
                self._kill(proc, f"Timed out after {timeout:g} s.", Status.UNSUCCESSFUL)
            if self.stopping and self.shutdown_deadline and now >= self.shutdown_deadline:
                self._kill(proc, "Cancelled: the daemon was shut down.", Status.CANCELLED)


def _kill_escaped(task_id: int) -> None:
    """Kill descendants of a finished task that left its process group (setsid).

    They were reparented to this daemon (a subreaper) when their parent died; the task id
    they inherited in their environment says whose they are. Only our own children are
    looked at, so nothing we did not start is ever signalled.
    """
    marker = f"{conf.TASK_ID_ENV}={task_id}".encode()
    for pid in linux.children(os.getpid()):
        if marker in linux.environ(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(os.getpgid(pid), signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def load_targets(tasks: list[Task]) -> None:
    """Load the objects of a claim with one query per model, before forking.

    The forked task inherits its object, so it reaches its first line without opening a
    database connection of its own.
    """
    by_type: dict[int, list[Task]] = {}
    for task in tasks:
        if task.content_type_id is not None:
            by_type.setdefault(task.content_type_id, []).append(task)
    for group in by_type.values():
        model = group[0].content_type.model_class() if group[0].content_type else None
        if model is None:
            continue
        keys = {}
        for task in group:
            try:
                keys[task.pk] = model._meta.pk.to_python(task.object_id)
            except ValidationError:
                keys[task.pk] = None
        found = model._default_manager.in_bulk([k for k in keys.values() if k is not None])
        for task in group:
            task.__dict__["target"] = found.get(keys[task.pk])
