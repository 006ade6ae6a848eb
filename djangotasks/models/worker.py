"""A ``Worker`` is a running ``taskd`` daemon, recorded by its heartbeats."""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from djangotasks import conf


class WorkerQuerySet(models.QuerySet["Worker"]):
    def alive(self) -> WorkerQuerySet:
        cutoff = timezone.now() - timedelta(seconds=conf.get().WORKER_TIMEOUT)
        return self.filter(stopped_at__isnull=True, last_seen__gte=cutoff)

    def lost(self) -> WorkerQuerySet:
        """Not stopped, but silent for longer than WORKER_TIMEOUT."""
        cutoff = timezone.now() - timedelta(seconds=conf.get().WORKER_TIMEOUT)
        return self.filter(stopped_at__isnull=True, last_seen__lt=cutoff)


class Worker(models.Model):
    hostname = models.CharField(_("host"), max_length=255)
    pid = models.IntegerField(_("process id"))
    started_at = models.DateTimeField(_("started"), default=timezone.now)
    last_seen = models.DateTimeField(_("last heartbeat"), default=timezone.now)
    stopped_at = models.DateTimeField(_("stopped"), null=True, blank=True)
    capacity = models.PositiveIntegerField(_("capacity"), default=1)
    mode = models.CharField(_("mode"), max_length=20, default="daemon")

    objects = WorkerQuerySet.as_manager()

    class Meta:
        verbose_name = _("worker")
        verbose_name_plural = _("workers")
        ordering = ["-last_seen"]
        indexes = [models.Index(fields=["stopped_at", "last_seen"], name="djangotasks_worker_seen")]

    def __str__(self) -> str:
        return f"{self.hostname}:{self.pid}"

    @property
    def is_alive(self) -> bool:
        timeout = timedelta(seconds=conf.get().WORKER_TIMEOUT)
        return self.stopped_at is None and self.last_seen >= timezone.now() - timeout
