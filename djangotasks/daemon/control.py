"""``taskd start/stop/status``: a locked pid file in a safe per-project place, and detaching."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from djangotasks import conf, routing


class ControlError(Exception):
    """A clear, user-facing reason why start/stop cannot proceed."""


def runtime_dir() -> Path:
    """A directory only this user can write: no pid-file races with other users in /tmp."""
    base = os.environ.get("XDG_RUNTIME_DIR") or os.path.join(Path.home(), ".cache")
    return Path(base) / "djangotasks"


def project_id() -> str:
    connection = routing.connection()  # one daemon per database that holds the tasks
    name = str(connection.settings_dict.get("NAME") or "")
    key = f"{settings.SETTINGS_MODULE}|{connection.vendor}|{name}"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def default_pidfile() -> Path:
    configured = conf.get().PIDFILE
    return Path(configured) if configured else runtime_dir() / f"taskd-{project_id()}.pid"


def default_logfile(pidfile: Path) -> Path:
    configured = conf.get().LOGFILE
    return Path(configured) if configured else pidfile.with_suffix(".log")


class PidFile:
    """Held (``flock``) for the daemon's whole life: a stale file is never mistaken for it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ImproperlyConfigured(
                f"Cannot write the taskd pid file {self.path}: {exc.strerror}. Set "
                f"DJANGOTASKS['PIDFILE'] to a writable path or pass --pidfile."
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ControlError(
                f"taskd is already running (pid {read_pid(self.path)}, pid file {self.path})."
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            raise ImproperlyConfigured(
                f"Cannot write the taskd pid file {self.path}: {exc.strerror}."
            ) from exc
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            os.close(self.fd)
            self.fd = None


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def running_pid(path: Path) -> int | None:
    """The pid of the daemon holding ``path``, or None if no daemon holds it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_pid(path)  # locked: a daemon is alive
    finally:
        os.close(fd)
    return None


def detach(run: Callable[[], None], pidfile: Path, logfile: Path, timeout: float = 30.0) -> int:
    """Double-fork ``run`` into the background; return its pid once it holds the pid file."""
    if (pid := running_pid(pidfile)) is not None:
        raise ControlError(f"taskd is already running (pid {pid}, pid file {pidfile}).")
    logfile.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Never share a database connection with the detached child (nor SQLite's locks).
    connections.close_all()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    first = os.fork()
    if first == 0:  # the intermediate child; its child becomes the daemon
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        try:
            out = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out, 1)
            os.dup2(out, 2)
            run()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        os._exit(code)
    os.waitpid(first, 0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (pid := running_pid(pidfile)) is not None:
            return pid
        time.sleep(0.05)
    raise ControlError(f"taskd did not start within {timeout:.0f} s; see {logfile}.")


def stop(pidfile: Path, wait: float, now: bool = False) -> int:
    """Stop the daemon holding ``pidfile``; return its pid. SIGTERM, twice for ``now``."""
    pid = running_pid(pidfile)
    if pid is None:
        raise ControlError(f"taskd is not running (no daemon holds {pidfile}).")
    os.kill(pid, signal.SIGTERM)
    if now:
        time.sleep(0.1)
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if running_pid(pidfile) is None:
            return pid
        time.sleep(0.05)
    raise ControlError(f"taskd (pid {pid}) is still stopping after {wait:.0f} s.")
