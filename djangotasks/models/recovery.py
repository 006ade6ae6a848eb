"""Status changes for tasks whose process is gone or never came: lost workers, phantoms.

Like transitions.py (whose helpers they use), each change is one conditional UPDATE, so a
daemon coming back to life, a cancel and a recovery never overwrite each other.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from djangotasks import exceptions, routing
from djangotasks.logfields import log_finished
from djangotasks.models.task import Task
from djangotasks.models.transitions import (
    _after_failure,
    _announce,
    error_record,
    fail_dependents,
)
from djangotasks.models.worker import Worker
from djangotasks.statuses import ACTIVE, Status


def end_lost(task: Task, reason: str, worker: Worker | None = None) -> bool:
    """End an active task whose process is gone with its worker (or was never seen).

    A running one ends ``unsuccessful`` (and is retried where it allows it); one that someone
    asked to cancel ends ``cancelled``, never retried. ``worker``: only if still its owner.
    """
    owner = {"worker": worker} if worker is not None else {}
    now = timezone.now()
    with routing.atomic():
        for old, new, text, cls in (
            (Status.RUNNING, Status.UNSUCCESSFUL, reason, exceptions.WorkerLost),
            (Status.REQUESTED_CANCEL, Status.CANCELLED, f"Cancelled. {reason}",
             exceptions.TaskCancelled),
        ):  # fmt: skip
            fields = {
                "status": new, "reason": text, "end_date": now, "error": error_record(cls, text)
            }  # fmt: skip
            if Task.objects.filter(pk=task.pk, status=old, **owner).update(**fields):
                break
        else:
            return False
        for name, value in fields.items():
            setattr(task, name, value)
        _announce(task, old, new)
        _after_failure(task, new)
    # Logged by the daemon that found it lost: ``worker`` is the one that ran it, if known.
    log_finished(task, lost_worker=None if worker is None else str(worker))
    if task.is_django_task:
        from djangotasks import results  # Django >= 6 only: such rows exist only there

        results.send_finished(task)
    return True


def unclaim(task: Task, worker: Worker, delay: float = 0.0) -> bool:
    """Give back a task this worker claimed but never started: it is scheduled again.

    Only while no process was recorded for it (``pid`` is empty), so a task that may have
    run is never run twice. ``delay`` keeps it from being claimed again at once.
    """
    run_after = timezone.now() + timedelta(seconds=delay) if delay else task.run_after
    if task.status == Status.REQUESTED_CANCEL:
        # Asked to cancel before it started: that is what it gets.
        fields = {"reason": "Cancelled before it started.", "end_date": timezone.now()}
        with routing.atomic():
            if not _cas_owned(task, worker, Status.REQUESTED_CANCEL, Status.CANCELLED, **fields):
                return False
            fail_dependents([task])
        log_finished(task)
        return True
    return _cas_owned(
        task, worker, Status.RUNNING, Status.SCHEDULED,
        worker=None, start_date=None, run_after=run_after,
    )  # fmt: skip


def _cas_owned(task: Task, owner: Worker, old: str, new: str, **fields: Any) -> bool:
    """CAS on a task ``owner`` claimed and never started (no pid recorded)."""
    changed = Task.objects.filter(pk=task.pk, worker=owner, status=old, pid=None).update(
        status=new, **fields
    )
    if changed:
        task.status = new
        for name, value in fields.items():
            setattr(task, name, value)
        _announce(task, old, new)
    return bool(changed)


def recover_lost_workers(reason_prefix: str = "Worker lost") -> int:
    """Fence off daemons that stopped beating and end (or retry) the tasks they owned."""
    recovered = 0
    now = timezone.now()
    for worker in Worker.objects.lost().with_silence():
        # Conditional on still being lost: a daemon that beats again meanwhile stays.
        fenced = Worker.objects.lost().filter(pk=worker.pk).update(stopped_at=now)
        if fenced:
            silent = f"{worker.silence.total_seconds():.0f} s"
            reason = f"{reason_prefix}: {worker} stopped sending heartbeats (silent for {silent})."
            recovered += end_tasks_of(worker, reason)
    # Running tasks whose worker row was deleted, or whose worker has stopped (a daemon that
    # crashed out of its loop, a row edited by hand), have nobody to finish them either.
    orphans = Task.objects.filter(status__in=ACTIVE).filter(
        Q(worker__isnull=True) | Q(worker__stopped_at__isnull=False)
    )
    for task in orphans:
        if end_lost(task, reason_prefix + "."):
            recovered += 1
    return recovered


def end_tasks_of(worker: Worker, reason: str) -> int:
    """End the tasks a lost ``worker`` was running (see ``end_lost``)."""
    ended = 0
    for task in Task.objects.filter(worker=worker, status__in=ACTIVE):
        if end_lost(task, reason, worker):
            ended += 1
    return ended
