"""Reading what a task process sends: its output, and its progress and reason.

``TaskMessages`` is a part of the daemon's ``Supervisor`` (its base class). Everything here
is untrusted: output is bounded per read, control messages are parsed defensively and their
values cleaned before they are stored, and what had to change is said in the task's log.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, InterfaceError

from djangotasks import dberrors
from djangotasks.daemon.process import TaskProcess
from djangotasks.models import Task
from djangotasks.untrusted import clean_bigint, clean_text

if TYPE_CHECKING:
    from djangotasks.daemon.logwriter import LogWriter

READ_SIZE = 65536
# One readiness event reads at most this much of a task's output, so a task that writes
# faster than the daemon reads cannot keep the loop from everything else.
MAX_READS_PER_EVENT = 16
# After a task exited its pipe is read to the end; a descendant that still holds it open
# and keeps writing cannot make that last forever.
MAX_READS_AT_EXIT = 256
# A control message is one short JSON line; a task writing without newlines to the control
# pipe must not grow the daemon's memory.
MAX_CONTROL_LINE = 64 * 1024
MAX_REASON = 2000
MAX_CLASS_PATH = 255
MAX_TRACEBACK = 10000
MAX_PROGRESS_MESSAGE = 255
PROGRESS_SAVE_INTERVAL = 0.2


class TaskMessages:
    # Provided by Supervisor.
    selector: selectors.BaseSelector
    processes: dict[int, TaskProcess]
    logs: LogWriter

    def _note_once(self, proc: TaskProcess, kind: str, text: str) -> None:
        if kind not in proc.noted:
            proc.noted.add(kind)
            self.logs.note(proc.task.pk, text)

    # -- what a task sends ---------------------------------------------------------------

    def _read_output(self, proc: TaskProcess, max_reads: int = MAX_READS_PER_EVENT) -> None:
        for _ in range(max_reads):
            if proc.output_closed:
                return
            try:
                data = os.read(proc.output_fd, READ_SIZE)
            except BlockingIOError:
                return
            if not data:
                self.logs.append(proc.task.pk, proc.decoder.decode(b"", final=True))
                self._close_fd(proc, "output")
                return
            self.logs.append(proc.task.pk, proc.decoder.decode(data))

    def _read_control(self, proc: TaskProcess, max_reads: int = MAX_READS_PER_EVENT) -> None:
        for _ in range(max_reads):
            if proc.control_closed:
                break
            try:
                data = os.read(proc.control_fd, READ_SIZE)
            except BlockingIOError:
                break
            if not data:
                self._close_fd(proc, "control")
                break
            proc.control_buffer += data
            if len(proc.control_buffer) > MAX_CONTROL_LINE and b"\n" not in proc.control_buffer:
                size = len(proc.control_buffer)
                proc.control_buffer = b""
                self._note_once(proc, "control-flood", f"ignored {size:,} bytes written to the "
                                "control pipe without a line end")  # fmt: skip
        *lines, proc.control_buffer = proc.control_buffer.split(b"\n")
        for line in lines:
            self._control_message(proc, line)

    def _control_message(self, proc: TaskProcess, line: bytes) -> None:
        try:
            message = json.loads(line) if len(line) <= MAX_CONTROL_LINE else None
        except (ValueError, RecursionError):  # junk, or "[[[[..." nested beyond the stack
            message = None
        if not isinstance(message, dict):
            self._note_once(proc, "control-junk", "ignored a malformed control message")
            return
        if isinstance(message.get("progress"), dict):
            self._take_progress(proc, message["progress"])
        if "reason" in message:
            proc.reason = self._cleaned(
                proc, "the reason", clean_text, message["reason"], MAX_REASON
            )
        error = message.get("error")
        path = error.get("exception_class_path") if isinstance(error, dict) else None
        text = error.get("traceback") if isinstance(error, dict) else None
        if isinstance(path, str) and isinstance(text, str):
            proc.error = {
                "exception_class_path": self._cleaned(
                    proc, "the error's class", clean_text, path, MAX_CLASS_PATH
                ),
                "traceback": self._cleaned(proc, "the traceback", clean_text, text, MAX_TRACEBACK),
            }

    def _take_progress(self, proc: TaskProcess, progress: dict[str, Any]) -> None:
        current = self._cleaned(proc, "the progress value", clean_bigint, progress.get("current"))
        total = self._cleaned(proc, "the progress total", clean_bigint, progress.get("total"))
        message = self._cleaned(
            proc, "the progress message", clean_text, progress.get("message") or "",
            MAX_PROGRESS_MESSAGE,
        )  # fmt: skip
        proc.progress = {"current": current or 0, "total": total, "message": message}
        proc.progress_dirty = True

    def _cleaned(self, proc: TaskProcess, what: str, clean: Callable[..., Any], *args: Any) -> Any:
        """``clean(value, ..., what)``'s value; what had to change is said once in the log."""
        value, note = clean(*args, what=what)
        if note is not None:
            self._note_once(proc, what, note)
        return value

    def _save_progress(self, proc: TaskProcess, now: float, force: bool = False) -> None:
        """Store the latest progress, at most every PROGRESS_SAVE_INTERVAL per task."""
        if not proc.progress_dirty:
            return
        if not force and now - proc.progress_saved_at < PROGRESS_SAVE_INTERVAL:
            return
        assert proc.progress is not None
        fields = {
            "progress_current": proc.progress["current"],
            "progress_total": proc.progress["total"],
            "progress_message": proc.progress["message"],
        }
        proc.progress_dirty = False
        proc.progress_saved_at = now
        try:
            Task.objects.filter(pk=proc.task.pk).update(**fields)
        except (DatabaseError, InterfaceError) as exc:  # siblings: a closed connection too
            if dberrors.is_outage(exc):
                proc.progress_dirty = True  # saved once the database is back
                raise
            # A value this database will not take (an emoji on a utf8mb3 MySQL table): the
            # task goes on; its progress is simply not shown.
            error, _ = clean_text(f"{type(exc).__name__}: {exc}", 300, "the error")
            self._note_once(proc, "progress refused", f"progress could not be stored ({error})")
            return
        for name, value in fields.items():
            setattr(proc.task, name, value)

    def progress_due(self) -> float | None:
        """When the next pending progress may be saved (for the loop's timeout)."""
        dirty = [p.progress_saved_at for p in self.processes.values() if p.progress_dirty]
        return min(dirty) + PROGRESS_SAVE_INTERVAL if dirty else None

    def _close_fd(self, proc: TaskProcess, which: str) -> None:
        fd = proc.output_fd if which == "output" else proc.control_fd
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(fd)
        os.close(fd)
        setattr(proc, f"{which}_closed", True)
