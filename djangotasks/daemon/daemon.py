"""The taskd daemon: claims tasks, runs each in its own process group, captures, cancels.

One thread, one ``selectors`` loop over the task processes' pipes (and the wake-up
channel's descriptor), so forking is safe: there is no other thread whose locks a fork could
copy. Every database write goes through ``models.transitions`` or the ``LogWriter``. This
module has the loop, the lifecycle and the heartbeats; channels/ the wake-up channels,
queue.py takes work from the queue and the Supervisor (supervision.py) runs the task
processes.

Errors are sorted where they happen: a database outage is waited out with backoff, an
error in the work of one task ends that task, and anything else is logged and retried with
backoff too. Nothing a task does ends the loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import socket
import threading
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from django.db import close_old_connections, connections
from django.utils import timezone

from djangotasks import alerts, conf, dberrors, routing, scheduler, tallies
from djangotasks.daemon import linux
from djangotasks.daemon.channels import PollingChannel, Wakeup, WakeupChannel, open_channel
from djangotasks.daemon.lease import Watchdog, lease_seconds
from djangotasks.daemon.logwriter import LogWriter
from djangotasks.daemon.outage import Outage
from djangotasks.daemon.process import TaskProcess, describe_exit
from djangotasks.daemon.queue import Queue
from djangotasks.daemon.schedules import ScheduleTimer
from djangotasks.daemon.supervision import Supervisor
from djangotasks.exceptions import WorkerLost
from djangotasks.logfields import fields, log_as
from djangotasks.models import Worker, recovery, transitions
from djangotasks.models.clock import DatabaseClock
from djangotasks.statuses import Status

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

logger = logging.getLogger("djangotasks")

MAX_DB_BACKOFF = 10.0
# After the last task process is gone at shutdown, how long the daemon keeps trying to
# record their ends while the database is away. Unrecorded ends are recovered later as
# "worker lost" (by the next daemon started on this host, or by any other after
# WORKER_TIMEOUT).
FINISH_WAIT = 10.0


class Daemon(Queue):
    def __init__(
        self,
        *,
        max_concurrency: int | None = None,
        thread_mode: bool = False,
        stop_event: threading.Event | None = None,
        queues: Collection[str] | None = None,
    ) -> None:
        self.settings = conf.get()
        # The queues served (None: every queue); the rest is left to other daemons.
        self.queues = frozenset(queues) if queues else None
        # Resolved now, but the connection is looked up per use: in thread mode this runs in
        # the web thread, and Django's connections belong to the thread that uses them.
        self.alias = routing.alias()
        self.capacity = max_concurrency or self.settings.MAX_CONCURRENCY
        self.thread_mode = thread_mode
        method = self.settings.START_METHOD
        # Forking a threaded process can copy a lock mid-use; a web process has threads.
        self.use_fork = method == "fork" or (method == "auto" and not thread_mode)
        self.stop_event = stop_event or threading.Event()
        self.selector = selectors.DefaultSelector()
        self.logs = LogWriter(self.settings.MAX_LOG_SIZE)
        self.watchdog = Watchdog()
        self.supervisor = Supervisor(
            self.settings,
            self.selector,
            self.logs,
            use_fork=self.use_fork,
            thread_mode=thread_mode,
            watchdog=self.watchdog,
            watchdog_exited=self._watchdog_exited,
        )
        self.worker: Worker | None = None
        # Polling until _setup() opens the database's own channel (in the daemon's thread).
        self.channel: WakeupChannel = PollingChannel(self.selector, self.settings.POLL_INTERVAL)
        self.look_needed = True
        self.cancels_needed = False
        self.phantoms_needed = False
        self.stopping = False
        self.shutdown_deadline: float | None = None
        self.stop_now = False
        self.signal_count = 0
        now = time.monotonic()
        self.next_poll = now
        self.next_cancel_check = now
        self.next_heartbeat = now
        self.next_maintenance = now
        self.next_flush = now
        self.next_tally_flush = now
        self.next_due: float | None = None
        self.schedule_timer = ScheduleTimer()
        self.claim_paused_until = now
        self.start_failures: dict[int, int] = {}  # task id -> failed starts in a row
        self.unsaved_pids: dict[int, int] = {}  # task id -> pid not yet recorded
        # At least one try per heartbeat interval: the lease is renewed as soon as it can be.
        self.outage = Outage(min(MAX_DB_BACKOFF, self.settings.HEARTBEAT_INTERVAL))
        # The lease (see lease.py): until when our tasks may run without a new heartbeat.
        self.lease = lease_seconds(self.settings.WORKER_TIMEOUT, self.settings.HEARTBEAT_INTERVAL)
        self.lease_end = now + self.lease
        self.lease_lost = False  # logged once per loss
        # Since when heartbeats have gone through at their interval without a gap: only
        # after WORKER_TIMEOUT of such contact may we judge others' silence (right after an
        # outage everybody's last heartbeat is old).
        self.contact_since = now
        self.last_beat_sent = now
        self.wakeup_r, self.wakeup_w = os.pipe()
        os.set_blocking(self.wakeup_r, False)
        os.set_blocking(self.wakeup_w, False)
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, (self._on_wakeup, None))

    # -- lifecycle -----------------------------------------------------------------------

    def run(self) -> None:
        """Run until stopped (SIGTERM/SIGINT, ``stop()``), then shut down cleanly."""
        self._setup()
        try:
            while not self._done():
                for key, _events in self.selector.select(self._timeout()):
                    self._dispatch(*key.data)
                self._tick()
        finally:
            self._teardown()

    def stop(self, now: bool = False) -> None:
        """Ask the daemon to stop (from another thread or a signal handler)."""
        self.stop_now = self.stop_now or now
        self.stop_event.set()
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self.wakeup_w, b"s")

    def _dispatch(self, callback: Any, proc: TaskProcess | None) -> None:
        """Run a readiness callback; one task's trouble stays that task's."""
        try:
            if proc is None:
                callback()
            else:
                self.supervisor.contained(proc, callback, proc)
        except Exception as exc:
            if dberrors.is_outage(exc):
                self._database_failed(exc)
            else:
                logger.exception("taskd: error in an event handler (%s)", callback.__name__,
                                 extra=fields("event_handler_error"))  # fmt: skip

    def _setup(self) -> None:
        if not self.thread_mode and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
            signal.signal(signal.SIGCHLD, lambda *_: None)
            signal.set_wakeup_fd(self.wakeup_w)
            linux.become_subreaper()
            # Forked before any task, so its only child is none of theirs; never in thread
            # mode (forking a threaded web process): there the loop alone keeps the lease.
            self.watchdog.start()
        tallies.buffer()  # this thread's counts are written about once a second
        alerts.buffer()  # bad ends are mailed together, at most once per ALERT_INTERVAL
        self._register()
        # Schedules written in code (@task(schedule=...)) as this start of the code has them.
        scheduler.sync_code_schedules()
        self.channel = open_channel(self.alias, self.selector, self.settings.POLL_INTERVAL)
        logger.info(
            "taskd %s started: up to %d tasks at once, %s, database %s (%s), queues: %s",
            self.worker, self.capacity, "fork" if self.use_fork else "fresh interpreters",
            self.alias, self.db.vendor,
            ", ".join(sorted(self.queues)) if self.queues else "all",
            extra=fields("daemon_started", capacity=self.capacity, database=self.alias,
                         queues=sorted(self.queues) if self.queues else None),
        )  # fmt: skip

    def _register(self) -> None:
        """Record this start of the daemon: a new row, its identity until it stops."""
        sent_at = time.monotonic()
        host_key = linux.host_key()
        self.worker = Worker.objects.create(
            hostname=socket.gethostname(),
            pid=os.getpid(),
            host_key=host_key,
            beat=DatabaseClock(),
            capacity=self.capacity,
            mode="thread" if self.thread_mode else "daemon",
        )
        self.worker.refresh_from_db(fields=["beat"])
        log_as(self.worker)  # every line this thread logs from now on names it
        self._renewed(sent_at)
        self.contact_since = sent_at
        if host_key:
            self._recover_predecessors(host_key)

    def _recover_predecessors(self, host_key: str) -> None:
        """A daemon restarted on this machine, in this pid namespace, recovers its dead
        predecessors at once rather than after WORKER_TIMEOUT. Only there does a pid mean
        the same process: another container or machine may use the same host name and pid.
        """
        assert self.worker is not None
        others = Worker.objects.filter(host_key=host_key, stopped_at=None).exclude(
            pk=self.worker.pk
        )
        for other in others:
            # Our own pid in another row: that daemon is gone (we have its pid now).
            if other.pid != os.getpid() and _pid_alive(other.pid):
                continue
            if Worker.objects.filter(pk=other.pk, stopped_at=None).update(
                stopped_at=timezone.now()
            ):
                recovery.end_tasks_of(
                    other, f"Worker lost: {other} is no longer running (found at restart)."
                )

    def _done(self) -> bool:
        if self.stop_event.is_set() and not self.stopping:
            self._begin_shutdown()
        supervisor = self.supervisor
        if self.stop_now:
            supervisor.kill_all("Daemon stopped at once.", Status.CANCELLED)
        if not self.stopping or supervisor.processes:
            return False
        if supervisor.finishing and self.outage.down:
            # The processes are gone but their ends cannot be recorded: the database is out
            # (a second signal means now; a first one waits a little for it to come back).
            assert self.shutdown_deadline is not None
            give_up_at = self.shutdown_deadline + self.settings.CANCEL_GRACE + FINISH_WAIT
            if self.stop_now or time.monotonic() >= give_up_at:
                logger.error(
                    "taskd: stopping without recording the end of task(s) %s: the database "
                    "is unavailable; they will be recovered as lost",
                    ", ".join(f"#{proc.task.pk}" for proc in supervisor.finishing),
                    extra=fields(
                        "ends_not_recorded",
                        task_ids=[proc.task.pk for proc in supervisor.finishing],
                    ),
                )
                supervisor.finishing.clear()
        return not supervisor.finishing

    def _begin_shutdown(self) -> None:
        self.stopping = True
        self.shutdown_deadline = time.monotonic() + self.settings.SHUTDOWN_WAIT
        if self.supervisor.processes:
            logger.info(
                "taskd: stopping; waiting up to %.0f s for %d running task(s)",
                self.settings.SHUTDOWN_WAIT, len(self.supervisor.processes),
                extra=fields("daemon_stopping"),
            )  # fmt: skip

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signal_count += 1
        self.stop(now=self.signal_count > 1)

    def _teardown(self) -> None:
        for proc in list(self.supervisor.processes.values()):
            proc.signal_group(signal.SIGKILL)
        self._stop_watchdog()
        if not self.outage.down:
            try:
                self.logs.flush()
                tallies.flush()
                if self.worker is not None:
                    Worker.objects.filter(pk=self.worker.pk).update(stopped_at=timezone.now())
            except Exception as exc:
                logger.error("taskd: could not store the last output and stop time: %s", exc,
                             extra=fields("stop_not_recorded"))  # fmt: skip
        alerts.close()  # what is pending is mailed now, not lost with the process
        self.channel.close()
        self.selector.close()
        if not self.thread_mode and threading.current_thread() is threading.main_thread():
            signal.set_wakeup_fd(-1)  # a late signal must not write to a closed pipe
        os.close(self.wakeup_r)
        os.close(self.wakeup_w)
        logger.info("taskd %s stopped", self.worker, extra=fields("daemon_stopped"))
        log_as(None)  # the thread (a test's) may log on: no longer as this worker

    # -- the loop ------------------------------------------------------------------------

    @property
    def db(self) -> BaseDatabaseWrapper:
        """The tasks' database connection of the running thread (thread mode: the daemon's)."""
        return connections[self.alias]

    def _on_wakeup(self) -> None:
        # Signals (SIGCHLD, SIGTERM) and stop() write here to interrupt select().
        try:
            while os.read(self.wakeup_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _woken(self, news: Wakeup) -> None:
        """Act on what the wake-up channel says changed."""
        if news & Wakeup.QUEUE:
            self.look_needed = True
        if news & Wakeup.CANCELS and self.supervisor.processes:
            self.cancels_needed = True
        if news & Wakeup.SCHEDULES:
            self.schedule_timer.changed(certain=not news & Wakeup.UNKNOWN)
        # A channel that just stopped reporting (lost) wants polling at POLL_INTERVAL from
        # now, not at the next safety poll.
        self.next_poll = min(self.next_poll, time.monotonic() + self.channel.poll_interval)

    def _cancels_polled(self) -> bool:
        # Without a wake-up channel (MySQL) a cancel is only seen by asking; ask often while
        # tasks run (one indexed SELECT), so a cancel takes effect well within a second.
        return bool(self.supervisor.processes) and not self.channel.reports_changes

    def _timeout(self) -> float:
        now = time.monotonic()
        supervisor = self.supervisor
        deadlines = [self.next_heartbeat, self.next_maintenance]
        if supervisor.processes and not self.lease_lost:
            deadlines.append(self.lease_end)
        if self.outage.down:
            deadlines.append(self.outage.retry_at)
        else:
            deadlines.append(self.next_poll)
            if self.look_needed and self._can_claim():
                deadlines.append(max(now, self.claim_paused_until))
            if self.cancels_needed or supervisor.finishing or self.phantoms_needed:
                deadlines.append(now)
            if self.logs.has_pending():
                deadlines.append(self.next_flush)
            if tallies.has_pending():
                deadlines.append(self.next_tally_flush)
            if (progress_due := supervisor.progress_due()) is not None:
                deadlines.append(progress_due)
            if not self.stopping:
                deadlines.append(self.schedule_timer.due_at)
            if (channel_due := self.channel.due_at(now)) is not None:
                deadlines.append(channel_due)
        if self._cancels_polled():
            deadlines.append(self.next_cancel_check)
        if self.next_due is not None:
            deadlines.append(self.next_due)
        if (alerts_due := alerts.due_at()) is not None:
            deadlines.append(alerts_due)  # mailing needs no database: during an outage too
        for proc in supervisor.processes.values():
            if proc.kill_deadline is not None:
                deadlines.append(proc.kill_deadline)
            if proc.pidfd is None and not proc.exited:
                deadlines.append(now + 0.05)  # no pidfd: poll for the exit
        if self.thread_mode or self.stopping:
            deadlines.append(now + 0.2)
        return max(0.0, min(deadlines) - now)

    def _tick(self) -> None:
        now = time.monotonic()
        self._keep_lease(now)
        if self.supervisor.reap():
            self.look_needed = True  # a slot is free
        self._update_watchdog()
        self.supervisor.enforce_limits(now, self.shutdown_deadline if self.stopping else None)
        if self.next_due is not None and now >= self.next_due:
            self.next_due = None
            self.look_needed = True
        alerts.send_due(now)
        if not self.outage.may_try(now):
            return
        try:
            self._database_work(now)
        except Exception as exc:
            self._database_failed(exc)
        else:
            if (lasted := self.outage.ended(time.monotonic())) is not None:
                tallies.outage_seen()
                logger.warning(
                    "taskd: database reachable again after %.0f s", lasted,
                    extra=fields("database_available", outage_seconds=round(lasted)),
                )  # fmt: skip

    def _database_work(self, now: float) -> None:
        # Not while the database is out: reopening the channel's connection could hang on
        # a server out of reach, and what it would say can wait for the outage's end.
        due = self.channel.due_at(now)
        if not self.outage.down and due is not None and now >= due:
            self._woken(self.channel.drain(now))
        # After an outage, a heartbeat is the probe: "reachable again" means a query went
        # through, not merely that this round had nothing to ask.
        if now >= self.next_heartbeat or self.outage.down:
            self._heartbeat()
        if self.logs.has_pending() and now >= self.next_flush:
            self.logs.flush()
            self.next_flush = now + self.settings.LOG_FLUSH_INTERVAL
            if self.logs.orphaned:
                self.cancels_needed = True  # rows were deleted: find out which, kill them
        self.supervisor.save_progress(now)
        self._save_pids()
        self._record_ends()
        if tallies.has_pending() and now >= self.next_tally_flush:
            tallies.flush()
            self.next_tally_flush = now + tallies.FLUSH_INTERVAL
        if now >= self.schedule_timer.due_at and not self.stopping:
            if self.schedule_timer.fire(now, channel=self.channel.reports_changes):
                self.look_needed = True
        if self.phantoms_needed:
            self._end_phantoms()  # claimed just before an outage, perhaps never started
            self.phantoms_needed = False
        if self._cancels_polled() and now >= self.next_cancel_check:
            self.cancels_needed = True
        if (self.look_needed and self._can_claim()) or self.cancels_needed or now >= self.next_poll:
            self._look()
        if now >= self.next_maintenance:
            self._maintenance()

    def _can_claim(self) -> bool:
        # A look wanted while every slot is taken waits for a slot: no busy loop.
        return len(self.supervisor.processes) < self.capacity and not self.stopping

    def _record_ends(self) -> None:
        """Record how the ended task processes ended, in the order they ended."""
        assert self.worker is not None
        finishing = self.supervisor.finishing
        while finishing:
            proc = finishing[0]
            try:
                self.supervisor.finish(proc, self.worker)
            except Exception as exc:
                if dberrors.is_outage(exc):
                    raise  # kept in the list: recorded once the database is back
                self.supervisor.finish_despite(proc, self.worker, exc)
            finishing.pop(0)
            self.schedule_timer.task_ended(proc.task.name)

    def _database_failed(self, exc: Exception) -> None:
        """Back off: the database is out, or the daemon's own work failed unexpectedly."""
        if self.outage.failed(time.monotonic()):
            if dberrors.is_outage(exc):
                logger.warning("taskd: database unavailable (%s); retrying with backoff", exc,
                               extra=fields("database_unavailable"))  # fmt: skip
            else:
                logger.error("taskd: unexpected error; retrying with backoff", exc_info=exc,
                             extra=fields("daemon_error"))  # fmt: skip
        with contextlib.suppress(Exception):
            self.db.close()
        self.channel.reset()
        # A claim may have committed just before the error, with no process started for it.
        self.phantoms_needed = self.worker is not None

    # -- heartbeats and recovery ---------------------------------------------------------

    def _heartbeat(self) -> None:
        """Renew our heartbeat (and with it the lease), then judge the others' silence."""
        assert self.worker is not None
        sent_at = time.monotonic()
        self.next_heartbeat = sent_at + self.settings.HEARTBEAT_INTERVAL
        alive = Worker.objects.filter(pk=self.worker.pk, stopped_at__isnull=True).update(
            beat=DatabaseClock(), last_seen=timezone.now()
        )
        if not alive:
            # Another daemon declared us lost and ended our tasks: their processes must not
            # run on unsupervised (a retry may already run elsewhere). Fence ourselves.
            logger.error("taskd %s was declared lost; killing its tasks and re-registering",
                         self.worker, extra=fields("worker_declared_lost"))  # fmt: skip
            self.supervisor.kill_all("Worker lost.", Status.UNSUCCESSFUL, error=WorkerLost)
            self._register()
            return
        if sent_at - self.last_beat_sent > 2 * self.settings.HEARTBEAT_INTERVAL:
            self.contact_since = sent_at  # a gap: the others may have had one too
        self._renewed(sent_at)
        # Checked at every heartbeat: a lost daemon is found within WORKER_TIMEOUT plus one
        # heartbeat interval (one indexed query when nobody is lost).
        if sent_at - self.contact_since >= self.settings.WORKER_TIMEOUT:
            if recovery.recover_lost_workers():
                self.look_needed = True

    def _renewed(self, sent_at: float) -> None:
        """A heartbeat sent at ``sent_at`` (monotonic) was recorded: the lease runs from then."""
        self.last_beat_sent = sent_at
        self.lease_end = sent_at + self.lease
        if self.lease_lost:
            logger.info("taskd %s: heartbeat recorded again; taking work again", self.worker,
                        extra=fields("lease_renewed"))  # fmt: skip
        self.lease_lost = False
        self._update_watchdog()

    def _keep_lease(self, now: float) -> None:
        """Stop our tasks once the lease has run out: before anyone may declare us lost."""
        if now < self.lease_end or self.lease_lost:
            return
        self.lease_lost = True  # and claims nothing until a heartbeat is recorded again
        silent = now - self.last_beat_sent
        running = self.supervisor.running
        if not running:
            return
        logger.error(
            "taskd %s: no heartbeat recorded for %.0f s (lease %.0f s); stopping %d task(s) "
            "so that no other daemon runs them a second time",
            self.worker, silent, self.lease, len(running),
            extra=fields("lease_lost", task_ids=[proc.task.pk for proc in running]),
        )  # fmt: skip
        reason = (
            f"Worker lost: {self.worker} could not record a heartbeat for {silent:.0f} s and "
            f"stopped its task before another daemon could take it over."
        )
        self.supervisor.kill_all(reason, Status.UNSUCCESSFUL, error=WorkerLost)

    def _update_watchdog(self) -> None:
        groups = tuple(sorted(proc.pid for proc in self.supervisor.running))
        self.watchdog.update(self.lease_end, groups)

    def _watchdog_exited(self, status: int) -> None:
        """The watchdog died (killed by someone): start another at once."""
        self.watchdog.exited()
        logger.warning("taskd: the lease watchdog ended (%s); starting another",
                       describe_exit(status)[1] or "exit 0",
                       extra=fields("watchdog_exited"))  # fmt: skip
        try:
            self.watchdog.start()
        except OSError as exc:  # fork refused (a pid limit, no memory)
            logger.error("taskd: could not start a lease watchdog (%s); the loop alone keeps "
                         "the lease", exc, extra=fields("watchdog_not_started"))  # fmt: skip
            return
        self._update_watchdog()

    def _stop_watchdog(self) -> None:
        pid = self.watchdog.pid
        self.watchdog.close()
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            self.watchdog.pid = None

    def _maintenance(self) -> None:
        now = time.monotonic()
        # CONN_MAX_AGE=0 means "close after each request"; the daemon serves no requests and
        # keeps its connection (a broken one is replaced after the error). A positive age is
        # honoured here, now and then rather than on every look.
        if self.db.settings_dict.get("CONN_MAX_AGE"):
            close_old_connections()
        self.next_maintenance = now + max(self.settings.WORKER_TIMEOUT / 2, 1.0)
        transitions.fail_orphaned_dependents()
        self._end_phantoms()
        if self.supervisor.processes:
            self._check_cancels()  # deleted rows send no notification


def _pid_alive(pid: int) -> bool:
    # Read from a Worker row: untrusted. 0 or a negative number would address a process
    # group, and a number beyond the platform's pid_t would raise OverflowError.
    if not isinstance(pid, int) or not 0 < pid < 2**31:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
