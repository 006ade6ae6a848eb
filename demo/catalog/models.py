"""The demo's domain: datasets that are imported, analysed, reported on and archived.

The tasks do what real batch work does, slowly enough to watch: print progress, depend on
each other, fail now and then, and run subprocesses.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time

from django.db import models

from djangotasks import current_task, task


def row_seconds() -> float:
    # DEMO_ROW_SECONDS speeds the demo up for its smoke test; 0.1 s a row makes the
    # 600-row import take a minute, long enough to watch, cancel and re-run.
    return float(os.environ.get("DEMO_ROW_SECONDS", "0.1"))


class Dataset(models.Model):
    name = models.CharField(max_length=100)
    source = models.CharField(max_length=200, help_text="The file the import reads.")
    rows = models.PositiveIntegerField(default=600, help_text="How many rows the import reads.")
    report_failure_rate = models.FloatField(
        default=0.3, help_text="How often the report fails (this is a demo)."
    )
    imported_rows = models.PositiveIntegerField(default=0, editable=False)
    mean_value = models.FloatField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @task(label="Import rows")
    def import_rows(self) -> None:
        print(f"Importing {self.rows} rows from {self.source}", flush=True)
        rng = random.Random(self.pk)
        for i in range(1, self.rows + 1):
            time.sleep(row_seconds())
            if rng.random() < 0.01:
                print(f"warning: row {i}: empty price, using 0", file=sys.stderr, flush=True)
            if i % 50 == 0 or i == self.rows:
                print(f"{i:>7,} / {self.rows:,} rows imported", flush=True)
            current_task.set_progress(i, self.rows, f"row {i:,} of {self.rows:,}")
        Dataset.objects.filter(pk=self.pk).update(imported_rows=self.rows)
        print("Import complete.")

    @task(import_rows, label="Compute statistics")
    def compute_stats(self) -> None:
        rng = random.Random(self.pk * 7)
        values = []
        steps = 20
        for step in range(1, steps + 1):
            values.extend(rng.gauss(100, 15) for _ in range(max(1, self.rows // steps)))
            current_task.set_progress(step, steps, "aggregating")
            time.sleep(row_seconds() * 2)
        mean = statistics.fmean(values)
        Dataset.objects.filter(pk=self.pk).update(mean_value=mean)
        print(f"{'rows':<8}{len(values):>10,}")
        print(f"{'mean':<8}{mean:>10.2f}")
        print(f"{'stdev':<8}{statistics.stdev(values):>10.2f}")
        print(f"{'min':<8}{min(values):>10.2f}")
        print(f"{'max':<8}{max(values):>10.2f}")

    @task(compute_stats, label="Render report")
    def render_report(self) -> None:
        sections = ["summary", "distribution", "outliers", "appendix"]
        for i, section in enumerate(sections, 1):
            print(f"rendering {section}...", flush=True)
            current_task.set_progress(i, len(sections), section)
            time.sleep(row_seconds() * 5)
            # SystemRandom: task processes are forked, and a forked PRNG may repeat itself.
            if section == "outliers" and random.SystemRandom().random() < self.report_failure_rate:
                raise RuntimeError(
                    f"report for {self.name}: the chart server timed out on '{section}' "
                    "(this demo fails now and then: run it again)"
                )
        print(f"report written: reports/{self.pk}-{self.name.lower().replace(' ', '-')}.pdf")

    @task(label="Archive source files")
    def archive(self) -> None:
        """Runs a shell pipeline: its output is captured like the task's own."""
        script = (
            'echo "archiving $DATASET"; '
            "for part in 1 2 3 4 5; do "
            '  echo "compressing part $part/5"; sleep "$PAUSE"; '
            "done; "
            'echo "checksum:" $(echo "$DATASET" | sha256sum | cut -c1-16); '
            'echo "a warning on stderr" >&2'
        )
        env = {**os.environ, "DATASET": self.name, "PAUSE": str(row_seconds() * 10)}
        subprocess.run(["sh", "-c", script], check=True, env=env)
        print("archive stored")
