"""A ``Worker`` is a running ``taskd`` daemon, recorded by its heartbeats.

A row is one start of one daemon: its primary key is its identity, unique per start.
Host name and pid are shown, never trusted to tell daemons apart (containers share both);
``host_key`` says which machine and pid namespace the pid belongs to. Heartbeats (``beat``)
are written and judged by the database's clock (see clock.py).
"""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from djangotasks import conf
from djangotasks.models.clock import DatabaseClock


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
