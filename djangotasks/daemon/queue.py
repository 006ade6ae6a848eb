"""The part of the daemon that takes work from the queue: claims, starts, cancels, phantoms.

``Queue`` is a part of ``Daemon`` (its base class): the decisions about what to claim and
when; the processes it starts and kills are the daemon's ``Supervisor``'s. Every status
change goes through ``models.transitions``.
"""

from __future__ import annotations

import logging
import time

from django.utils import timezone

from djangotasks import dberrors
from djangotasks.daemon.channels import WakeupChannel
from djangotasks.daemon.supervision import DELETED, Supervisor
from djangotasks.logfields import fields, log_finished
from djangotasks.models import Task, Worker, claiming, recovery, transitions
from djangotasks.models.targets import load_targets
from djangotasks.statuses import ACTIVE, Status

logger = logging.getLogger("djangotasks")

# A task whose process cannot be started (fork refused under a pid limit, out of memory or
# descriptors) is given back to the queue and tried again after 1, 2, 4 s; the daemon
# claims nothing meanwhile. After the last try it ends with the error as its reason.
START_ATTEMPTS = 4
START_RETRY_DELAY = 1.0
# Where the wake-up channel does not report cancels, how often they are polled while tasks
# run. (How often the queue is polled is the channel's to say: channels/base.py.)
CANCEL_POLL_INTERVAL = 0.2


class Queue:
    # Provided by Daemon.
    supervisor: Supervisor
    worker: Worker | None
    use_fork: bool
    stopping: bool
    look_needed: bool
    capacity: int
    queues: frozenset[str] | None
    cancels_needed: bool
    next_poll: float
    next_cancel_check: float
    next_due: float | None
    claim_paused_until: float
    start_failures: dict[int, int]
    unsaved_pids: dict[int, int]
    lease_lost: bool
    channel: WakeupChannel

    def _look(self) -> None:
        """Claim what fits, and act on cancels of our tasks."""
        now = time.monotonic()
        polled = now >= self.next_poll
        if polled:
            self.next_poll = now + self.channel.poll_interval
        if self.supervisor.processes and (self.cancels_needed or polled):
            self._check_cancels()
            self.next_cancel_check = now + CANCEL_POLL_INTERVAL
        self.cancels_needed = False
        if not (self.look_needed or polled):
            return
        free = self.capacity - len(self.supervisor.processes)
        if self.stopping or free <= 0 or now < self.claim_paused_until or self.lease_lost:
            return
        if polled and not self.look_needed:
            # A plain poll with nothing due costs one cheap query, not a transaction.
            if not Task.objects.in_queues(self.queues).claimable(timezone.now()).exists():
                return
        self.look_needed = False
        claimed = claiming.claim(self.worker, free, self.queues)  # type: ignore[arg-type]
        self._start_claimed(claimed)
        if len(claimed) == free:
            self.look_needed = True  # there may be more; look again when a slot frees
        elif self.channel.reports_changes:
            self._schedule_next_due()  # polling finds due tasks anyway

    def _start_claimed(self, claimed: list[Task]) -> None:
        # A database error from here on leaves claimed tasks without a process ("phantoms"):
        # the phantom check after the outage gives back those that never started.
        if self.use_fork:
            # The forked task inherits its object, so it reaches its first line without
            # opening a database connection of its own. A model whose objects cannot be
            # loaded here is left to the task process, which says why in that task's log.
            load_targets(claimed, _preload_failed)
        assert self.worker is not None
        keep = self.channel.keep()
        for index, task in enumerate(claimed):
            try:
                proc = self.supervisor.start(task, self.worker, keep)
            except Exception as exc:  # OSError mostly: EAGAIN, ENOMEM, EMFILE
                if dberrors.is_outage(exc):
                    raise
                self._start_failed(task, exc)
                for rest in claimed[index + 1 :]:  # likely to fail alike: give them back
                    recovery.unclaim(rest, self.worker)
                break
            self.start_failures.pop(task.pk, None)
            self.unsaved_pids[task.pk] = proc.pid
        self._save_pids()

    def _start_failed(self, task: Task, exc: Exception) -> None:
        assert self.worker is not None
        attempt = self.start_failures.get(task.pk, 0) + 1
        delay = START_RETRY_DELAY * 2 ** (attempt - 1)
        self.claim_paused_until = time.monotonic() + delay
        if attempt >= START_ATTEMPTS:
            self.start_failures.pop(task.pk, None)
            logger.error("taskd: could not start task #%s: %s; giving up", task.pk, exc,
                         extra=fields("task_start_failed", task, attempt=attempt))  # fmt: skip
            reason = f"Could not start the task process: {exc}"
            if transitions.finish(task, self.worker, Status.UNSUCCESSFUL, reason):
                log_finished(task)
            return
        self.start_failures[task.pk] = attempt
        logger.warning(
            "taskd: could not start task #%s: %s; it is scheduled again in %.0f s",
            task.pk, exc, delay,
            extra=fields("task_start_failed", task, attempt=attempt, retry_in=delay),
        )  # fmt: skip
        recovery.unclaim(task, self.worker, delay)

    def _save_pids(self) -> None:
        """Record the pids of started tasks (kept and saved again after a database error)."""
        if not self.unsaved_pids:
            return
        running = {proc.task.pk for proc in self.supervisor.processes.values()}
        try:
            claiming.record_pids(
                {pk: pid for pk, pid in self.unsaved_pids.items() if pk in running}
            )
        except Exception as exc:
            if dberrors.is_outage(exc):
                raise
            # Only shown in the admin; not worth blocking everything else for.
            logger.error("taskd: could not record the pids of tasks %s: %s", list(running), exc,
                         extra=fields("pids_not_recorded", task_ids=list(running)))  # fmt: skip
        self.unsaved_pids.clear()

    def _schedule_next_due(self) -> None:
        # Delayed tasks (retries, run_after) wake no one when they come due; set a timer.
        soonest = (
            Task.objects.scheduled()
            .in_queues(self.queues)
            .filter(run_after__gt=timezone.now())
            .order_by("run_after")
            .values_list("run_after", flat=True)
            .first()
        )
        if soonest is not None:
            delay = (soonest - timezone.now()).total_seconds()
            self.next_due = time.monotonic() + max(0.0, delay)

    def _check_cancels(self) -> None:
        """Compare our processes with their rows: cancel requested, row deleted or taken."""
        ids = {proc.task.pk: proc for proc in self.supervisor.processes.values()}
        rows = dict(Task.objects.filter(pk__in=list(ids)).values_list("pk", "status"))
        for pk, proc in ids.items():
            status = rows.get(pk)
            if proc.exited or (proc.kill_reason and status != Status.REQUESTED_CANCEL):
                continue
            if status == Status.REQUESTED_CANCEL:
                proc.task.status = Status.REQUESTED_CANCEL
                self.supervisor.kill(proc, "Cancelled.", Status.CANCELLED)
            elif status is None:
                logger.warning("taskd: task #%s was deleted while running; killing it", pk,
                               extra=fields("task_deleted", proc.task))  # fmt: skip
                self.supervisor.kill(proc, "", DELETED, grace=0)
            elif status != Status.RUNNING:
                # Another daemon recovered it (we were cut off): it must not run twice.
                logger.warning("taskd: task #%s became %s elsewhere; killing it", pk, status,
                               extra=fields("task_taken_elsewhere", proc.task))  # fmt: skip
                self.supervisor.kill(proc, "", DELETED, grace=0)

    def _end_phantoms(self) -> None:
        """End rows that say they run here although no process of ours runs them.

        One that never got a process (a database error between the claim and the start) is
        given back to the queue; one that had a process we no longer know is lost.
        """
        assert self.worker is not None
        supervisor = self.supervisor
        ours = [proc.task.pk for proc in [*supervisor.processes.values(), *supervisor.finishing]]
        phantoms = Task.objects.filter(worker=self.worker, status__in=ACTIVE).exclude(pk__in=ours)
        for task in phantoms:
            try:
                if task.pid is None and recovery.unclaim(task, self.worker):
                    logger.warning("taskd: task #%s was claimed but never started; now %s",
                                   task.pk, task.status,
                                   extra=fields("task_unclaimed", task))  # fmt: skip
                    continue
                reason = f"Worker lost: {self.worker} has no process for this task."
                recovery.end_lost(task, reason, self.worker)
            except Exception as exc:
                if dberrors.is_outage(exc):
                    raise
                logger.error("taskd: could not end task #%s", task.pk, exc_info=exc,
                             extra=fields("task_end_failed", task))  # fmt: skip


def _preload_failed(group: list[Task], exc: Exception) -> None:
    if dberrors.is_outage(exc):
        raise exc
    logger.warning("taskd: could not preload the objects of %s: %s", group[0].name, exc,
                   extra=fields("preload_failed", task_name=group[0].name))  # fmt: skip
