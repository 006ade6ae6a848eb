"""What every figure of ``bench.suite`` is made of: samples, percentiles, daemon processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
POLL = 0.02  # how often the bench looks at the database while it waits
TICK = os.sysconf("SC_CLK_TCK")  # the unit of the CPU times in /proc/<pid>/stat


@dataclass
class Figure:
    key: str
    label: str
    unit: str
    samples: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float | None:
        return percentile(self.samples, 50)

    @property
    def p95(self) -> float | None:
        return percentile(self.samples, 95)


def percentile(samples: list[float], q: float) -> float | None:
    """Nearest-rank percentile (no interpolation between two runs)."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil
    return ordered[int(rank) - 1]


@dataclass(frozen=True)
class Cpu:
    """CPU seconds (user + system) of a process so far: its own, and those of the children
    it has reaped (the kernel adds a child's to its parent's when the parent waits for it)."""

    own: float
    children: float

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(self.own - other.own, self.children - other.children)


def cpu_of(pid: int) -> Cpu:
    with open(f"/proc/{pid}/stat") as f:
        # The fields after the command name, which may hold spaces and parentheses.
        fields = f.read().rsplit(")", 1)[1].split()
    # utime, stime, cutime, cstime: fields 14-17 of the line, 12-15 after the name.
    utime, stime, cutime, cstime = (int(value) / TICK for value in fields[11:15])
    return Cpu(utime + stime, cutime + cstime)


def bench_env(db: str, bench_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="bench.settings",
        BENCH_DB=db,
        BENCH_DIR=str(bench_dir),
        PYTHONPATH=str(ROOT),
    )
    env.pop("DJANGOTASKS_TASK_ID", None)
    return env


class Process:
    """A daemon (taskd or the peer's db_worker) started as a real subprocess."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.cpu_notes: list[tuple[float, Cpu]] = []  # (time.time(), its CPU then)
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "django", *args],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def rss_mb(self) -> float:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS for {self.pid}")

    def cpu(self) -> Cpu:
        return cpu_of(self.pid)

    def note_cpu(self) -> None:
        cpu = self.cpu()
        self.cpu_notes.append((time.time(), cpu))  # stamped after it: never before the reading

    def cpu_at(self, when: float) -> Cpu:
        """Its CPU at the last note taken by ``when`` (a ``time.time()``): what it had used
        before a moment that only the database records, such as its first task's start."""
        taken = [cpu for at, cpu in self.cpu_notes if at <= when]
        # Notes begin as it starts: before the first one it had used (next to) nothing.
        return taken[-1] if taken else Cpu(0.0, 0.0)

    def check(self) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(
                f"{self.popen.args} exited with {self.popen.returncode}:\n"
                + self.log_path.read_text(errors="replace")[-3000:]
            )

    def stop(self, timeout: float = 60.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = POLL) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {predicate}")
        time.sleep(interval)
