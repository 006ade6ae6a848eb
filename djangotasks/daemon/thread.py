"""``DJANGOTASK_DAEMON_THREAD = True``: run the daemon as a thread of the web process.

For development only. The thread starts on the first request a process serves, so it runs in
web processes (runserver, gunicorn workers) and never in ``migrate``, ``shell``, ``taskd`` or
a task process, which serve no requests. Tasks start as fresh interpreters, since forking a
threaded web process is unsafe.
"""

from __future__ import annotations

import atexit
import logging
import threading
from typing import Any

from djangotasks import conf
from djangotasks.logfields import fields

logger = logging.getLogger("djangotasks")
_lock = threading.Lock()
_daemon: Any = None
_thread: threading.Thread | None = None


def start_on_first_request(**kwargs: Any) -> None:
    if _thread is not None or not conf.get().DAEMON_THREAD or conf.in_task_process():
        return
    start()


def start() -> threading.Thread | None:
    """Start the daemon thread once per process; return it (None in a task process)."""
    global _daemon, _thread
    from djangotasks.daemon.daemon import Daemon

    with _lock:
        if _thread is not None or conf.in_task_process():
            return _thread
        _daemon = Daemon(thread_mode=True)
        _thread = threading.Thread(target=_run, name="djangotasks-daemon", daemon=True)
        _thread.start()
        atexit.register(stop)
        return _thread


def _run() -> None:
    from django.db import connections

    try:
        _daemon.run()
    except Exception:
        logger.exception("djangotasks daemon thread crashed",
                         extra=fields("daemon_crashed", worker=_daemon.worker))  # fmt: skip
    finally:
        connections.close_all()  # this thread's connections, whichever alias they are on


def stop(timeout: float = 10.0) -> None:
    global _daemon, _thread
    with _lock:
        daemon, thread = _daemon, _thread
        _daemon = _thread = None
    if daemon is not None and thread is not None:
        daemon.stop(now=True)
        thread.join(timeout)
