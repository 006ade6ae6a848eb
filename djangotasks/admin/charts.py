"""Charts of the last hours, drawn by the server as SVG geometry (no chart library, no JS).

The functions return plain numbers; ``djangotasks/_chart.html`` turns them into ``<svg>``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from djangotasks.statuses import FAILED, Status
from djangotasks.templatetags.djangotasks_admin import duration

if TYPE_CHECKING:
    from collections.abc import Iterable

WIDTH, HEIGHT = 480, 160
LEFT, BOTTOM, TOP = 62, 20, 10  # room for the axis labels ("2 h 05 min" on the y axis)
PLOT_W, PLOT_H = WIDTH - LEFT - 6, HEIGHT - BOTTOM - TOP


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass
class Tick:
    x: float
    label: str


@dataclass
class Chart:
    title: str
    summary: str
    y_max_label: str
    bars: list[Bar] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    plot_w: int = PLOT_W
    plot_h: int = PLOT_H

    @property
    def baseline(self) -> int:
        return TOP + PLOT_H


@dataclass
class Hour:
    start: datetime
    successful: int = 0
    failed: int = 0
    durations: list[float] = field(default_factory=list)


def hourly(
    rows: Iterable[tuple[datetime | None, datetime | None, str]], now: datetime, hours: int = 24
) -> list[Hour]:
    """Bucket (end_date, start_date, status) rows into ``hours`` hourly buckets ending now."""
    first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    buckets = [Hour(first + timedelta(hours=i)) for i in range(hours)]
    for end, start, status in rows:
        if end is None:  # not finished: no bucket yet
            continue
        index = int((end - first).total_seconds() // 3600)
        if not 0 <= index < hours:
            continue
        bucket = buckets[index]
        if status == Status.SUCCESSFUL:
            bucket.successful += 1
        elif status in FAILED:
            bucket.failed += 1
        if start is not None:
            bucket.durations.append(max(0.0, (end - start).total_seconds()))
    return buckets


def _ticks(hours: list[Hour], slot: float) -> list[Tick]:
    return [
        Tick(LEFT + i * slot + slot / 2, f"{h.start:%H:%M}")
        for i, h in enumerate(hours)
        if i % 6 == 0
    ]


def throughput_chart(hours: list[Hour]) -> Chart:
    """Finished tasks per hour, successful below and failed (or cancelled) stacked above."""
    peak = max((h.successful + h.failed for h in hours), default=0) or 1
    slot = PLOT_W / len(hours)
    total_ok = sum(h.successful for h in hours)
    total_failed = sum(h.failed for h in hours)
    chart = Chart(
        title="Tasks finished per hour",
        summary=f"{total_ok} successful, {total_failed} failed or cancelled in {len(hours)} h",
        y_max_label=str(peak),
        ticks=_ticks(hours, slot),
    )
    for i, h in enumerate(hours):
        x = LEFT + i * slot + 1
        ok_h = PLOT_H * h.successful / peak
        failed_h = PLOT_H * h.failed / peak
        label = f"{h.start:%H:%M}: "
        if h.successful:
            chart.bars.append(
                Bar(x, TOP + PLOT_H - ok_h, slot - 2, ok_h, "ok", f"{label}{h.successful} ok")
            )
        if h.failed:
            chart.bars.append(
                Bar(
                    x,
                    TOP + PLOT_H - ok_h - failed_h,
                    slot - 2,
                    failed_h,
                    "failed",
                    f"{label}{h.failed} failed",
                )
            )
    return chart


def duration_chart(hours: list[Hour]) -> Chart:
    """Median duration per hour (bar) with the longest run of the hour (thin bar on top)."""
    peak = max((max(h.durations) for h in hours if h.durations), default=0.0) or 1.0
    slot = PLOT_W / len(hours)
    every = [d for h in hours for d in h.durations]
    summary = (
        f"median {duration(timedelta(seconds=statistics.median(every)))}, "
        f"longest {duration(timedelta(seconds=max(every)))}"
        if every
        else "no finished tasks"
    )
    chart = Chart(
        title="Duration per hour",
        summary=summary,
        y_max_label=duration(timedelta(seconds=peak)),
        ticks=_ticks(hours, slot),
    )
    for i, h in enumerate(hours):
        if not h.durations:
            continue
        x = LEFT + i * slot + 1
        median = statistics.median(h.durations)
        longest = max(h.durations)
        med_h = max(1.0, PLOT_H * median / peak)
        max_h = max(1.0, PLOT_H * longest / peak)
        label = f"{h.start:%H:%M}: median {duration(timedelta(seconds=median))}"
        label += f", longest {duration(timedelta(seconds=longest))}"
        chart.bars.append(Bar(x + slot / 3, TOP + PLOT_H - max_h, 2, max_h, "max", label))
        chart.bars.append(Bar(x, TOP + PLOT_H - med_h, slot - 2, med_h, "median", label))
    return chart
