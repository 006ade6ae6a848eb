"""Running totals for the metrics: what the task table cannot give cheaply at a million rows.

How many tasks ended each way, how long they ran and waited (histogram buckets), how many
database outages the daemons saw: counted as they happen (``djangotasks.tallies``), one row
per (metric, name, label), so reading every total is one small query, and pruning old tasks
takes nothing back (a Prometheus counter never goes down).
"""

from __future__ import annotations

from django.db import models


class Tally(models.Model):
    # "finished", "duration", "duration_sum", "pickup", "pickup_sum", "outages".
    metric = models.CharField(max_length=40)
    # A task name or a queue name; "" where the metric has none.
    name = models.CharField(max_length=255, blank=True, default="")
    # An outcome, or a histogram bucket's upper bound ("60", "+Inf"); "" where none.
    label = models.CharField(max_length=40, blank=True, default="")
    value = models.FloatField(default=0.0)

    class Meta:
        verbose_name = "tally"
        verbose_name_plural = "tallies"
        constraints = [
            models.UniqueConstraint(
                fields=["metric", "name", "label"], name="djangotasks_tally_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.metric}[{self.name}, {self.label}] = {self.value:g}"
