"""Failure alerts: Django's ``mail_admins`` when tasks fail, time out or are lost, grouped.

``record`` receives ``task_status_changed``. A daemon's thread buffers what it receives
(``buffer()``): the first bad end opens a window of ``ALERT_INTERVAL`` seconds, every bad
end within it joins the same mail, and the mail goes when the window closes (``send_due``,
from the daemon's loop) or when the daemon stops (``close``). So a burst of failures is one
mail, and a daemon mails at most once per window however many tasks fail. The delay costs
little: the tasks run for minutes to days, and their failures are in the admin at once.

Only daemons mail: they record the ends of tasks (failed, timed out, lost). Anywhere else
(a web request, the ``tasks`` command) a task ends badly only as the dependent of a task
the caller cancelled or deleted, the consequence of that request like the cancel itself;
and mailing each one at once would turn one cancel of a task with 1,000 dependents into
1,000 mails. The signal reaches your own receivers everywhere.

Task names, reasons and object ids are untrusted text: each goes into the plain-text mail as
one printable line, cut to a bounded length.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.mail import mail_admins
from django.urls import reverse

from djangotasks import conf, signals
from djangotasks.logfields import fields
from djangotasks.outcomes import BAD, FAILED, LOST, TIMED_OUT, outcome
from djangotasks.statuses import FINISHED
from djangotasks.untrusted import storable_text

if TYPE_CHECKING:
    from djangotasks.models import Task

logger = logging.getLogger("djangotasks")

SUBJECT_PREFIX = "[djangotasks]"
# Tasks listed one by one in a mail; the others are counted.
MAX_LISTED = 50
# Characters of one untrusted value (a reason, a name) on its line of the mail.
MAX_LINE = 200
# Seconds per socket operation while mailing when the project set no timeout: the daemon's
# loop waits for the mail server, and one that never answers must not outlast the lease.
MAIL_TIMEOUT = 5.0
WORDS = {FAILED: "failed", TIMED_OUT: "timed out", LOST: "lost"}

# .buffering: this thread is a daemon's; .batch: its open window's Batch, if one is open.
_local = threading.local()


@dataclass(frozen=True)
class Alert:
    """One task's bad end, as the mail shows it (every text already one clean line)."""

    task_id: int
    outcome: str
    label: str
    about: str  # "job #3", "result 1a2b3c4d", "" for a function task
    reason: str


@dataclass
class Batch:
    """The bad ends of one window: the first MAX_LISTED in detail, all of them counted."""

    due: float  # when the window closes (time.monotonic())
    first: datetime  # when the first and the last of them were recorded
    last: datetime
    listed: list[Alert] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    seen: set[tuple[int, str]] = field(default_factory=set)


def buffer() -> None:
    """Collect this thread's alerts until ``send_due()`` or ``close()`` (a daemon's thread)."""
    _local.buffering, _local.batch = True, None
    # Connected by a daemon only: elsewhere nobody listens, so a status change (5,000 of
    # them in a bulk run) schedules no after-commit signal at all.
    signals.task_status_changed.connect(record, dispatch_uid="djangotasks.alerts")
    if conf.get().ALERT_MAIL_ADMINS and not settings.ADMINS:
        logger.warning("taskd: ALERT_MAIL_ADMINS is on but ADMINS is empty: no alert is mailed",
                       extra=fields("alert_unaddressed"))  # fmt: skip


def enabled() -> bool:
    """Alerts are on and there is somebody to mail them to."""
    return conf.get().ALERT_MAIL_ADMINS and bool(settings.ADMINS)


def record(sender: Any, task: Task, old_status: str, new_status: str, **kwargs: Any) -> None:
    """The ``task_status_changed`` receiver: add a bad end to this thread's batch."""
    if not getattr(_local, "buffering", False):
        return
    if new_status not in FINISHED or old_status in FINISHED:
        return
    ended = outcome(task)
    if ended not in BAD or not enabled():
        return
    # A failed attempt that is retried was archived in the same transaction, before this
    # signal (sent after the commit): the attempt that fails for good is the one to tell.
    if task.archived:
        return
    now = datetime.now(UTC)
    batch: Batch | None = _local.batch
    if batch is None:  # the first bad end opens the window
        batch = _local.batch = Batch(time.monotonic() + conf.get().ALERT_INTERVAL, now, now)
    key = (task.pk, ended)
    if key in batch.seen:
        return  # an end is recorded once (compare-and-set); one alert for it, whatever comes
    batch.seen.add(key)
    batch.counts[ended] += 1
    batch.last = now
    if len(batch.listed) < MAX_LISTED:
        batch.listed.append(_alert(task, ended))


def due_at() -> float | None:
    """When this thread's pending alerts are due (``time.monotonic()``); None if none are."""
    batch: Batch | None = getattr(_local, "batch", None)
    return None if batch is None else batch.due


def send_due(now: float) -> None:
    """Mail the pending alerts if their window has closed by ``now`` (``time.monotonic()``)."""
    batch: Batch | None = getattr(_local, "batch", None)
    if batch is not None and now >= batch.due:
        _local.batch = None  # taken before mailing: sent once, whatever the mail server does
        _send(batch)


def close() -> None:
    """Mail whatever is pending now, and stop buffering (the daemon stops)."""
    batch: Batch | None = getattr(_local, "batch", None)
    _local.buffering, _local.batch = False, None
    if batch is not None:
        _send(batch)


def compose(batch: Batch, host: str) -> tuple[str, str]:
    """The subject and plain-text body of the mail about ``batch``'s tasks."""
    total = sum(batch.counts.values())
    counted = [(word, batch.counts[key]) for key, word in WORDS.items() if batch.counts[key]]
    if total == 1:
        summary = f"Task #{batch.listed[0].task_id} {counted[0][0]}"
    elif len(counted) == 1:
        summary = f"{total} tasks {counted[0][0]}"
    else:
        summary = f"{total} tasks ended badly ({', '.join(f'{n} {w}' for w, n in counted)})"
    first, last = f"{batch.first:%Y-%m-%d %H:%M:%S}", f"{batch.last:%H:%M:%S}"
    when = f"at {first}" if first.endswith(last) else f"from {first} to {last}"
    lines = [f"{summary} on {host} {when} UTC.", ""]
    paths = _admin_paths([alert.task_id for alert in batch.listed])
    for alert in batch.listed:
        about = f" of {alert.about}" if alert.about else ""
        lines.append(f"#{alert.task_id} {WORDS[alert.outcome]}: {alert.label}{about}")
        lines.append(f"    {alert.reason or '(no reason recorded)'}")
        if alert.task_id in paths:
            lines.append(f"    {paths[alert.task_id]}")
    if total > len(batch.listed):
        lines.append(f"... and {total - len(batch.listed)} more.")
    lines += [
        "",
        f"Sent by the djangotasks daemon on {host} (ALERT_MAIL_ADMINS), at most once every "
        f"{conf.get().ALERT_INTERVAL:g} s (ALERT_INTERVAL).",
    ]
    return f"{SUBJECT_PREFIX} {summary} on {host}", "\n".join(lines) + "\n"


def one_line(value: object, limit: int = MAX_LINE) -> str:
    """The first non-blank line of ``value``, printable, of at most ``limit`` characters."""
    text = ""
    for line in storable_text(str(value)).splitlines():  # any line break: \r, \x85, U+2028
        # Tabs, escapes, bidirectional overrides: nothing that redraws or reorders the line.
        text = "".join(c if c.isprintable() else " " for c in line).strip()
        if text:
            break
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _alert(task: Task, ended: str) -> Alert:
    return Alert(
        task_id=task.pk,
        outcome=ended,
        label=one_line(task.label),
        about=_about(task),
        reason=one_line(task.reason),
    )


def _about(task: Task) -> str:
    """The object ``task`` ran on, as ``Task.__str__`` names it, without loading it."""
    if task.is_django_task:
        return f"result {one_line(task.object_id[:8])}"  # a uuid: its first block tells apart
    if task.content_type_id is None:
        return ""
    from djangotasks.models.task import content_types

    model = content_types().get_for_id(task.content_type_id).model  # cached per process
    return f"{model} #{one_line(task.object_id, 64)}"


def _admin_paths(task_ids: list[int]) -> dict[int, str]:
    """Each task's admin page (a path: the daemon does not know the site's address)."""
    paths: dict[int, str] = {}
    for task_id in task_ids:
        try:
            paths[task_id] = reverse("admin:djangotasks_task_change", args=[task_id])
        except Exception:  # no admin, a site of another name, a URLconf that fails to import
            break
    return paths


def _send(batch: Batch) -> None:
    """Mail ``batch`` to ADMINS; a failure is logged."""
    if not enabled():
        return  # switched off, or ADMINS emptied, since they were recorded
    host = one_line(socket.gethostname(), 100)
    subject, body = compose(batch, host)
    try:
        with _mail_timeout():
            mail_admins(subject, body)
    except Exception:
        # Dropped, not kept for the next window: a mail server that is down would otherwise
        # get an ever longer mail, and every one of these tasks is in the admin anyway.
        tasks = sum(batch.counts.values())
        logger.exception("taskd: could not mail ADMINS the alert about %d task(s)", tasks,
                         extra=fields("alert_not_sent", tasks=tasks))  # fmt: skip


@contextlib.contextmanager
def _mail_timeout() -> Iterator[None]:
    # Without a timeout of the project's, Django's SMTP backend opens its socket with the
    # process's default timeout: none. The default is process-wide, so it is set only in a
    # main thread (taskd run has no other); a web process's other threads keep theirs.
    if socket.getdefaulttimeout() is not None or (
        threading.current_thread() is not threading.main_thread()
    ):
        yield
        return
    socket.setdefaulttimeout(MAIL_TIMEOUT)
    try:
        yield
    finally:
        socket.setdefaulttimeout(None)
