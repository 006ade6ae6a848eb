"""``manage.py taskd run|start|stop|restart|status``: a thin layer over ``djangotasks.daemon``."""

from __future__ import annotations

import logging
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from djangotasks.daemon import control
from djangotasks.logformat import JsonFormatter

EXIT_NOT_RUNNING = 3  # LSB: "program is not running"
MAX_QUEUE_NAME = 100  # Task.queue_name
LOG_FORMATS = ("text", "json")


class Command(BaseCommand):
    help = "Run the djangotasks daemon, which runs each scheduled task in its own process."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        run = sub.add_parser("run", help="run in the foreground (systemd, containers)")
        start = sub.add_parser("start", help="start in the background")
        restart = sub.add_parser("restart", help="stop (if running), then start")
        stop = sub.add_parser("stop", help="stop gracefully: running tasks may finish")
        status = sub.add_parser("status", help="daemons, their running tasks, queue depth")
        for p in (run, start, restart, stop, status):
            p.add_argument("--pidfile", type=Path, help="pid file (default: per project)")
        for p in (run, start, restart):
            p.add_argument("--concurrency", type=int, help="tasks run at once (MAX_CONCURRENCY)")
            p.add_argument(
                "--queue",
                action="append",
                dest="queues",
                metavar="NAME",
                help="serve only this queue (repeat for several; default: every queue)",
            )
            p.add_argument(
                "--log-format",
                choices=LOG_FORMATS,
                help="text (the default) or json: one object per line, with the task id, task "
                "name, worker and outcome as fields (unless LOGGING configures handlers)",
            )
        for p in (start, restart):
            p.add_argument("--logfile", type=Path, help="daemon log (default: next to pid)")
        for p in (stop, restart):
            p.add_argument("--wait", type=float, default=60.0, help="seconds to wait")
            p.add_argument("--now", action="store_true", help="kill running tasks at once")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        pidfile = options.get("pidfile") or control.default_pidfile()
        concurrency = options.get("concurrency")
        if concurrency is not None and concurrency < 1:
            raise CommandError("--concurrency must be at least 1")
        queues = options.get("queues")
        log_format = options.get("log_format")
        if queues and not all(0 < len(q) <= MAX_QUEUE_NAME for q in queues):
            raise CommandError(f"--queue takes a name of 1 to {MAX_QUEUE_NAME} characters")
        try:
            if action == "run":
                self._run(pidfile, concurrency, int(options["verbosity"]), queues, log_format)
            elif action in ("start", "restart"):
                if action == "restart" and control.running_pid(pidfile) is not None:
                    pid = control.stop(pidfile, options["wait"], options["now"])
                    self.stdout.write(f"taskd stopped (pid {pid})")
                logfile = options.get("logfile") or control.default_logfile(pidfile)
                pid = control.detach(
                    lambda: self._run(
                        pidfile, concurrency, int(options["verbosity"]), queues, log_format
                    ),
                    pidfile,
                    logfile,
                )
                self.stdout.write(f"taskd started (pid {pid}); log: {logfile}")
            elif action == "stop":
                pid = control.stop(pidfile, options["wait"], options["now"])
                self.stdout.write(f"taskd stopped (pid {pid})")
            else:
                self._status(pidfile)
        except (control.ControlError, ImproperlyConfigured) as exc:
            raise CommandError(str(exc)) from exc

    def _run(
        self,
        pidfile: Path,
        concurrency: int | None,
        verbosity: int,
        queues: list[str] | None,
        log_format: str | None = None,
    ) -> None:
        from djangotasks.daemon.daemon import Daemon

        if not _configure_logging(verbosity, log_format) and log_format is not None:
            # Asked for, but the project's LOGGING decides: say so rather than write a format
            # that the reader of this log did not expect without a word.
            self.stderr.write(
                f"taskd: --log-format {log_format} has no effect: LOGGING configures handlers "
                "for the djangotasks logger (or the root logger); use "
                "djangotasks.logformat.JsonFormatter there"
            )
        lock = control.PidFile(pidfile)
        lock.acquire()
        try:
            Daemon(max_concurrency=concurrency, queues=queues).run()
        finally:
            lock.release()

    def _status(self, pidfile: Path) -> None:
        from djangotasks import metrics
        from djangotasks.models import Task, Worker

        local = control.running_pid(pidfile)
        state = f"running, pid {local}" if local else "not running"
        self.stdout.write(f"local daemon: {state} ({pidfile})")
        workers = list(Worker.objects.alive().with_silence().order_by("hostname", "pid"))
        self.stdout.write(f"daemons alive: {len(workers)}")
        now = timezone.now()
        for worker in workers:
            running = list(Task.objects.running().filter(worker=worker).order_by("start_date"))
            # Judged by the database's clock, as the daemons judge each other.
            seen = worker.silence.total_seconds()
            self.stdout.write(
                f"  {worker} ({worker.mode}) up {_age(now - worker.started_at)}, "
                f"heartbeat {seen:.0f} s ago, running {len(running)}/{worker.capacity}, "
                f"worker #{worker.pk}, machine/pid namespace {worker.host_key or 'unknown'}"
            )
            for task in running:
                progress = task.progress
                percent = f" {progress.percent:.0f}%" if progress.percent is not None else ""
                self.stdout.write(
                    f"    #{task.pk} {task.name} pid {task.pid} for "
                    f"{_age(task.duration or timedelta())}{percent}"
                )
        depths = Task.objects.scheduled().queue_depths()
        total = sum(depths.values())
        by_queue = ", ".join(f"{name} {count}" for name, count in depths.items())
        self.stdout.write(f"queue: {total} scheduled" + (f" ({by_queue})" if by_queue else ""))
        for line in metrics.summary(metrics.snapshot()):  # what the metrics view exports
            self.stdout.write(line)
        if local is None:
            sys.exit(EXIT_NOT_RUNNING)


def _age(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def _configure_logging(verbosity: int, log_format: str | None = None) -> bool:
    """Log to stderr in ``log_format`` (text by default); False if the project's LOGGING
    configures handlers, which then decide everything."""
    logger = logging.getLogger("djangotasks")
    if logger.handlers or logging.getLogger().handlers:
        return False
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s [{os.getpid()}] %(levelname)s %(message)s")
        )
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)
    logger.propagate = False
    return True
