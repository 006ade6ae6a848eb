"""A ``Worker`` is a running ``taskd`` daemon, recorded by its heartbeats.

A row is one start of one daemon: its primary key is its identity, unique per start.
Host name and pid are shown, never trusted to tell daemons apart (containers share both);
``host_key`` says which machine and pid namespace the pid belongs to. Heartbeats (``beat``)
are written and judged by the database's clock (see clock.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import NamedTuple

from django.db import models
from django.db.models import Count, F
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from djangotasks import conf
from djangotasks.models.clock import DatabaseClock
from djangotasks.statuses import ACTIVE


def _timeout_ms() -> int:
    return round(conf.get().WORKER_TIMEOUT * 1000)


class WorkerQuerySet(models.QuerySet["Worker"]):
    def alive(self) -> WorkerQuerySet:
        """Not stopped, and heard from within WORKER_TIMEOUT (by the database's clock)."""
        return self.filter(stopped_at__isnull=True, beat__gte=DatabaseClock() - _timeout_ms())

    def lost(self) -> WorkerQuerySet:
        """Not stopped, but silent for longer than WORKER_TIMEOUT (by the database's clock)."""
        return self.filter(stopped_at__isnull=True, beat__lt=DatabaseClock() - _timeout_ms())

    def with_silence(self) -> WorkerQuerySet:
        """Annotate ``silence_ms``: how long since the last heartbeat, by the database's clock."""
        return self.annotate(silence_ms=DatabaseClock() - F("beat"))


class Worker(models.Model):
    hostname = models.CharField(_("host"), max_length=255)
    pid = models.IntegerField(_("process id"))
    # "<boot id>/<pid namespace>": two daemons with the same key share a machine and a pid
    # namespace, so one may test whether the other's pid is alive. Empty where unknown.
    host_key = models.CharField(_("machine and pid namespace"), max_length=100, blank=True)
    started_at = models.DateTimeField(_("started"), default=timezone.now)
    # Shown in the admin: the daemon's host's time of its last heartbeat. Never judged.
    last_seen = models.DateTimeField(_("last heartbeat"), default=timezone.now)
    # Judged: the last heartbeat in milliseconds since the epoch, by the database's clock.
    beat = models.BigIntegerField(_("last heartbeat (database clock, ms)"), default=0)
    stopped_at = models.DateTimeField(_("stopped"), null=True, blank=True)
    capacity = models.PositiveIntegerField(_("capacity"), default=1)
    mode = models.CharField(_("mode"), max_length=20, default="daemon")

    objects = WorkerQuerySet.as_manager()
    # Not a column: how many tasks the daemon runs now, set by load_running().
    running: int

    class Meta:
        verbose_name = _("worker")
        verbose_name_plural = _("workers")
        ordering = ["-last_seen"]
        indexes = [models.Index(fields=["stopped_at", "beat"], name="djangotasks_worker_beat")]

    def __str__(self) -> str:
        return f"{self.hostname}:{self.pid}"

    @property
    def silence(self) -> timedelta:
        """Time since the last heartbeat, by the database's clock (one query unless annotated
        with ``with_silence()``)."""
        silence_ms = getattr(self, "silence_ms", None)
        if silence_ms is None:
            fresh = Worker.objects.with_silence().filter(pk=self.pk).first()
            silence_ms = getattr(fresh, "silence_ms", None) or 0
            self.__dict__["silence_ms"] = silence_ms  # as if annotated: asked once
        return timedelta(milliseconds=max(0, silence_ms))

    @property
    def is_alive(self) -> bool:
        timeout = timedelta(seconds=conf.get().WORKER_TIMEOUT)
        return self.stopped_at is None and self.silence <= timeout


class Slots(NamedTuple):
    """What the daemons alive can take on: how many they are, their slots, the busy ones."""

    daemons: int
    capacity: int
    busy: int

    @property
    def free(self) -> int:
        # A task being cancelled still holds its slot, so busy never exceeds capacity for
        # long; during a shutdown or a lowered --concurrency it may.
        return max(0, self.capacity - self.busy)


def load_running(workers: list[Worker]) -> None:
    """Set ``running`` on each of ``workers``: the tasks it runs (or cancels) now.

    One query on the status index, bounded by the tasks in flight. Not a count joined from
    the workers to the tasks, nor one filtered by worker: the planner may then read every
    task a long-lived daemon ever ran (SQLite prefers the worker index).
    """
    from djangotasks.models.task import Task

    counts: dict[int, int] = {}
    if workers:
        rows = Task.objects.filter(status__in=ACTIVE).order_by().values_list("worker")
        counts = dict(rows.annotate(n=Count("*")))
    for worker in workers:
        worker.running = counts.get(worker.pk, 0)


def slots(workers: Iterable[Worker]) -> Slots:
    """The slots of the daemons alive among ``workers`` (after ``load_running``)."""
    alive = [w for w in workers if w.is_alive]
    return Slots(len(alive), sum(w.capacity for w in alive), sum(w.running for w in alive))
