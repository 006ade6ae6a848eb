"""djangotasks/daemon/linux.py without a daemon: a process's children and descendants from
/proc, the environment of a process that is gone, the host key where /proc says nothing, and
prctl() calls that are no-ops elsewhere than on Linux."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from djangotasks.daemon import linux

# Starts a child of its own, prints both pids, and waits to be killed.
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(child.pid, flush=True)
time.sleep(60)
"""


@pytest.fixture
def family():
    """A child of this process with a child of its own: (child, grandchild pid)."""
    child = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert child.stdout is not None
    grandchild = int(child.stdout.readline())
    yield child, grandchild
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()


def test_children_and_descendants_come_from_proc(family):
    child, grandchild = family
    assert child.pid in linux.children(os.getpid())
    assert linux.children(child.pid) == [grandchild]
    assert linux.descendants(child.pid) == [grandchild]
    ours = linux.descendants(os.getpid())
    assert ours.index(child.pid) < ours.index(grandchild)  # parents before their children
    assert linux.children(grandchild) == []


def test_a_process_that_is_gone_has_no_children_and_no_environment():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert linux.children(gone.pid) == []
    assert linux.descendants(gone.pid) == []
    assert linux.environ(gone.pid) == []


def test_the_environment_of_a_process_is_read_from_proc():
    assert any(item.startswith(b"PATH=") for item in linux.environ(os.getpid()))


def test_the_host_key_names_the_boot_and_the_pid_namespace():
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert linux.host_key().startswith(f"{boot_id}/")


def test_the_host_key_is_empty_where_proc_says_nothing(monkeypatch):
    monkeypatch.setattr(linux.Path, "read_text", lambda self: "\n")
    assert linux.host_key() == ""


def test_the_host_key_is_empty_without_proc(monkeypatch):
    def missing(path: str) -> os.stat_result:
        raise FileNotFoundError(2, "No such file or directory", path)

    monkeypatch.setattr(linux.os, "stat", missing)
    assert linux.host_key() == ""


def test_prctl_calls_are_no_ops_elsewhere_than_on_linux(monkeypatch):
    def no_libc() -> None:
        raise AssertionError("libc loaded")

    monkeypatch.setattr(linux, "IS_LINUX", False)
    monkeypatch.setattr(linux, "_load_libc", no_libc)
    linux.set_parent_death_signal(9)
    linux.become_subreaper()
