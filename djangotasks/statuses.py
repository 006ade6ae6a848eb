"""Task statuses, with the names of the original djangotasks."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Status(models.TextChoices):
    DEFINED = "defined", _("Defined")
    SCHEDULED = "scheduled", _("Scheduled")
    RUNNING = "running", _("Running")
    REQUESTED_CANCEL = "requested_cancel", _("Cancel requested")
    CANCELLED = "cancelled", _("Cancelled")
    SUCCESSFUL = "successful", _("Successful")
    UNSUCCESSFUL = "unsuccessful", _("Unsuccessful")


# A task in one of these owns (or is about to own) a process on some daemon.
ACTIVE = frozenset({Status.RUNNING, Status.REQUESTED_CANCEL})
# Scheduled or active: running it again returns it unchanged.
PENDING = frozenset({Status.SCHEDULED}) | ACTIVE
FINISHED = frozenset({Status.CANCELLED, Status.SUCCESSFUL, Status.UNSUCCESSFUL})
FAILED = frozenset({Status.CANCELLED, Status.UNSUCCESSFUL})
