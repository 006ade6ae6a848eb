"""The floor of a process per task: the CPU that forking the daemon's process costs.

``python -m bench.forkcost`` runs in the bench's environment (``bench_env``: its settings and
database). It loads what ``taskd run`` has loaded when it forks (Django, the daemon's modules,
an open connection), then forks ``--forks`` times; each child leaves at once with
``os._exit(0)`` and is waited for before the next fork. It prints JSON: the parent's and the
children's CPU per fork (ms) and its own RSS (MB). No task code runs, so this is what each
task the daemon forks costs before its first line: copying the page tables of a ~50 MB process,
the child's start in Python and its exit (tearing its copy down).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import subprocess
import sys
from typing import Any

from bench.harness import ROOT

FORKS = 200
# What ``manage.py taskd run`` has imported when it forks a task (with Django's own).
DAEMON_MODULES = ("djangotasks.management.commands.taskd", "djangotasks.daemon.daemon")


def load_like_a_daemon() -> None:
    import django

    django.setup()
    for module in DAEMON_MODULES:
        importlib.import_module(module)
    from djangotasks.models import Task

    Task.objects.exists()  # a connection open and the ORM's query machinery warm, as in taskd


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def fork_and_exit(forks: int) -> dict[str, float]:
    """CPU per fork (ms) of this process and of its children, each child leaving at once."""
    parent = cpu_seconds(resource.RUSAGE_SELF)
    children = cpu_seconds(resource.RUSAGE_CHILDREN)
    for _ in range(forks):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os._exit(0)
        os.waitpid(pid, 0)  # reaped: its CPU is now in RUSAGE_CHILDREN
    per_fork = 1000 / forks
    return {
        "forks": forks,
        "parent_ms": (cpu_seconds(resource.RUSAGE_SELF) - parent) * per_fork,
        "child_ms": (cpu_seconds(resource.RUSAGE_CHILDREN) - children) * per_fork,
    }


def measure_in_subprocess(env: dict[str, str], forks: int = FORKS) -> dict[str, Any]:
    """Run this module in a fresh interpreter (nothing of the bench loaded, no daemon running
    alongside) with ``env``, and return what it printed."""
    command = [sys.executable, "-m", "bench.forkcost", "--forks", str(forks)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {done.returncode}:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--forks", type=int, default=FORKS)
    args = parser.parse_args(argv)
    load_like_a_daemon()
    rss = rss_mb()  # before the forks: the size of what each one copies
    print(json.dumps({**fork_and_exit(args.forks), "rss_mb": rss}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
