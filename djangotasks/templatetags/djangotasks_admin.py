"""Template helpers for the admin pages: status badges, progress bars, durations."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from django import template
from django.utils import dateformat, timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from djangotasks.statuses import ACTIVE, Status

if TYPE_CHECKING:
    from datetime import datetime

    from djangotasks.models import Task

register = template.Library()


@register.simple_tag
def status_badge(task: Task) -> SafeString:
    """The status as a coloured badge; the class names the status for CSS and tests."""
    return format_html(
        '<span class="djangotasks-badge djangotasks-status-{}">{}</span>',
        task.status,
        Status(task.status).label if task.status in Status.values else task.status,
    )


@register.simple_tag
def progress_bar(task: Task, compact: bool = False) -> SafeString:
    """A native <progress> (indeterminate while running without a total) and its message.

    ``compact`` (list columns) shows the percentage only; the message becomes a tooltip.
    """
    current, total, message = task.progress
    percent = task.progress.percent
    if percent is not None:
        bar = format_html(
            '<progress class="djangotasks-progress" max="{}" value="{}" '
            'aria-label="{}">{} %</progress>',
            total,
            current,
            _("progress"),
            f"{percent:.0f}",
        )
        text = f"{percent:.0f} %" + (f" · {message}" if message else "")
    elif task.status in ACTIVE:
        bar = format_html(
            '<progress class="djangotasks-progress" aria-label="{}"></progress>', _("progress")
        )
        text = message or (f"{current:,}" if current is not None else "")
    elif message:
        return format_html('<span class="djangotasks-progress-text">{}</span>', message)
    else:
        return format_html("{}", "")
    if compact:
        return format_html(
            '<span class="djangotasks-progress-cell" title="{}">{}<span '
            'class="djangotasks-progress-text">{}</span></span>',
            message,
            bar,
            f"{percent:.0f} %" if percent is not None else "",
        )
    return format_html(
        '<span class="djangotasks-progress-cell">{}<span class="djangotasks-progress-text">{}'
        "</span></span>",
        bar,
        text,
    )


@register.filter
def duration(value: timedelta | None) -> str:
    """A short human duration: "4.2 s", "3 min 12 s", "2 h 05 min", "3 d 4 h"."""
    if value is None:
        return "—"
    seconds = value.total_seconds()
    if seconds < 10:
        return f"{seconds:.1f} s"
    seconds = int(seconds)
    if seconds < 3600:
        minutes, seconds = divmod(seconds, 60)
        return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"
    hours, rest = divmod(seconds, 3600)
    if hours < 48:
        return f"{hours} h {rest // 60:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


@register.filter
def since(value: datetime | None) -> str:
    """How long ago, as a duration: heartbeats and elapsed times."""
    if value is None:
        return "—"
    return duration(max(timedelta(0), timezone.now() - value))


@register.filter
def short_date(value: datetime | None) -> SafeString | str:
    """A date that fits a narrow column: "08:15" today, "27 Nov 08:15" this year, "27 Nov
    2025" before; the full date and time are in the ``title`` and the ``datetime``.

    The day and month never part (a no-break space); a narrow column may put the time on
    a second line.
    """
    if value is None:
        return "—"
    if timezone.is_aware(value):
        local, today = timezone.localtime(value), timezone.localdate()
    else:  # USE_TZ = False: naive datetimes in the server's time
        local, today = value, timezone.now().date()
    if local.date() == today:
        text = dateformat.format(local, "H:i")
    elif local.year == today.year:
        text = dateformat.format(local, "j\u00a0M H:i")
    else:
        text = dateformat.format(local, "j\u00a0M Y")
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        local.isoformat(),
        date_format(local, "DATETIME_FORMAT"),
        text,
    )
