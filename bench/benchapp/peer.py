"""The same bench tasks for the peer: Django's own tasks framework (``django.tasks``)."""

from __future__ import annotations

import time

from django.tasks import task


@task
def peer_first_line() -> float:
    return time.time()


@task
def peer_noop() -> None:
    pass
