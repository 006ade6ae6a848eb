"""What runs inside a task process, forked from the daemon or started fresh.

The child reports to the daemon through a control pipe (one JSON object per line: progress,
and the reason of a failure); its output goes to the output pipe at the descriptor level.
Run as ``python -m djangotasks.daemon.child TASK_ID WORKER_ID`` in "exec" mode.
"""

from __future__ import annotations

import contextlib
import faulthandler
import io
import json
import logging
import os
import signal
import sys
import traceback
from typing import TYPE_CHECKING, Any

from djangotasks import conf, tallies
from djangotasks.current import current_task
from djangotasks.daemon import django_task, linux
from djangotasks.exceptions import TaskMemoryLimitExceeded

if TYPE_CHECKING:
    from djangotasks.models import Task

# Exit codes with a meaning the daemon turns into a reason when the child sent none.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CRASHED = 70  # the task wrapper itself failed (EX_SOFTWARE)
# Characters of a traceback sent with a failure: a control message must stay one short line
# (escaped, each character may take six bytes).
MAX_TRACEBACK = 8000

# Inherited objects that must never be finalised in the child: a PostgreSQL connection
# closed here would send "Terminate" on the socket the daemon still uses. The child leaves
# with os._exit(), which runs no finalisers, so holding a reference is enough.
_inherited: list[Any] = []


def _kill_own_tree(signum: int, frame: Any) -> None:
    # The daemon died: take the task down with everything it started. As a subreaper this
    # process is the ancestor of every descendant, even of those that left the group.
    for pid in linux.descendants(os.getpid()):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    os.killpg(0, signal.SIGKILL)


def _unbuffered(fd: int) -> io.TextIOWrapper:
    # Unbuffered down to the descriptor (what python -u does), so a print is visible at once.
    return io.TextIOWrapper(
        io.FileIO(fd, "w", closefd=False),
        encoding="utf-8",
        errors="backslashreplace",
        write_through=True,
    )


def prepare_forked(output_fd: int, task: Task, keep: list[Any], parent: int) -> None:
    """Turn a freshly forked copy of the daemon into a clean task process."""
    from django.db import connections

    os.setpgid(0, 0)  # the parent does the same, so whichever runs first wins the race
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    _guard_parent_death()
    if os.getppid() != parent:
        os._exit(EXIT_CRASHED)  # the daemon died before the parent-death signal was armed
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    os.close(output_fd)
    os.environ[conf.TASK_ID_ENV] = str(task.pk)
    tallies.unbuffer()  # the daemon's buffer: what this task changes is counted at once
    _inherited.extend(keep)
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None:
            _inherited.append(connection.connection)
            connection.connection = None
        # Forget the parent's transaction state along with its connection.
        connection.in_atomic_block = False
        connection.savepoint_ids = []
        connection.needs_rollback = False
        connection.run_on_commit = []
    sys.stdout = _unbuffered(1)
    sys.stderr = _unbuffered(2)


def _guard_parent_death() -> None:
    # SIGUSR2 rather than SIGKILL: the handler kills the whole tree, so the task's
    # subprocesses die with it too. A task that replaces this handler opts out.
    signal.signal(signal.SIGUSR2, _kill_own_tree)
    linux.become_subreaper()
    linux.set_parent_death_signal(signal.SIGUSR2)


def _configure_logging() -> None:
    root = logging.getLogger()
    if root.handlers:
        return  # the project configured logging; its stream handlers write to fd 1/2 anyway
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(conf.get().TASK_LOG_LEVEL)


def _apply_memory_limit(limit: int | None) -> None:
    if limit is None:
        return
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _text(value: object, show: Any = str) -> str:
    """``str(value)`` (or ``repr``) of a task's exception or exit code, which may raise."""
    try:
        return str(show(value))
    except Exception:
        return f"<{type(value).__name__} that cannot be shown>"


def _report(control_fd: int, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        os.write(control_fd, json.dumps(message, default=str).encode() + b"\n")


def _error(cls: type[BaseException], exc: BaseException) -> dict[str, str]:
    """The exception as Django's ``TaskError`` (class path, traceback), sized for the pipe.

    The whole traceback is in the log; this keeps its end, which names the error.
    """
    try:
        text = "".join(traceback.format_exception(exc))
    except Exception:
        text = _text(exc)
    if len(text) > MAX_TRACEBACK:
        text = "...\n" + text[-MAX_TRACEBACK:]
    from djangotasks.models.transitions import error_record  # Django is set up by now

    return error_record(cls, text)


def execute(task: Task, control_fd: int) -> int:
    """Run the task's registered code; return the process exit code."""
    from django.db import connections

    from djangotasks.registry import UnknownTask, registry

    faulthandler.enable(file=sys.stderr)
    _configure_logging()
    current_task._activate(task, control_fd)
    try:
        definition = registry.get(task.name)
    except UnknownTask as exc:
        print(f"djangotasks: {exc}", file=sys.stderr)
        _report(control_fd, {"reason": f"Task code {task.name!r} is not registered."})
        return EXIT_FAILED
    target = None
    if definition.is_method:
        try:
            target = task.target
        except Exception as exc:
            traceback.print_exc()
            _report(control_fd, {"reason": f"Could not load its object: {_text(exc)}"[:1000]})
            return EXIT_FAILED
        finally:
            # The task's code opens its own connection if it needs one; a task that does not
            # must not hold one for hours (100 tasks would exhaust PostgreSQL's default 100).
            connections.close_all()
        if target is None:
            reason = f"Its object ({task.content_type} #{task.object_id}) no longer exists."
            print(f"djangotasks: {reason}", file=sys.stderr)
            _report(control_fd, {"reason": reason})
            return EXIT_FAILED
    limit = definition.memory_limit or conf.get().DEFAULT_MEMORY_LIMIT
    _apply_memory_limit(limit)
    try:
        if definition.takes_arguments:
            django_task.store_return_value(task, django_task.call(task, definition))
        elif target is not None:
            definition.func(target)
        else:
            definition.func()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if code:
            reason = f"Called sys.exit({_text(exc.code, repr)})."[:1000]
            _report(control_fd, {"reason": reason, "error": _error(type(exc), exc)})
        return code
    except MemoryError as exc:
        traceback.print_exc()
        reason = f"Out of memory (limit {limit} bytes)."
        cls = TaskMemoryLimitExceeded if limit else MemoryError
        _report(control_fd, {"reason": reason, "error": _error(cls, exc)})
        return EXIT_FAILED
    except BaseException as exc:
        traceback.print_exc()
        summary = f"{type(exc).__name__}: {_text(exc)}"
        _report(control_fd, {"reason": summary[:1000], "error": _error(type(exc), exc)})
        return EXIT_FAILED
    finally:
        current_task.flush()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass  # the task closed its output; nothing left to flush
    return EXIT_OK


def main(argv: list[str]) -> int:
    """Entry point of a fresh-interpreter task process (thread mode, START_METHOD="exec")."""
    import django
    from django.db import connections

    task_id, worker_id, control_fd = int(argv[1]), int(argv[2]), int(argv[3])
    _guard_parent_death()
    sys.stdout = _unbuffered(1)
    sys.stderr = _unbuffered(2)
    django.setup()
    from djangotasks.models import Task
    from djangotasks.statuses import ACTIVE

    task = Task.objects.select_related("content_type").get(pk=task_id)
    connections.close_all()  # as in a forked task: no connection held unless the task needs one
    if task.worker_id != worker_id or task.status not in ACTIVE:
        print(
            f"djangotasks: task #{task_id} is not running for worker {worker_id}", file=sys.stderr
        )
        return EXIT_FAILED
    return execute(task, control_fd)


if __name__ == "__main__":
    code = EXIT_CRASHED
    try:
        code = main(sys.argv)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        os._exit(code)
