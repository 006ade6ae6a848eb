"""Linux process facilities (prctl, /proc) the daemon and task processes use; no-ops elsewhere."""

from __future__ import annotations

import contextlib
import ctypes
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
IS_LINUX = sys.platform.startswith("linux")


_libc: ctypes.CDLL | None = None


def _prctl(option: int, value: int) -> None:
    global _libc
    if not IS_LINUX:
        return
    if _libc is None:
        # Loaded once, in the daemon, and inherited by every forked task: find_library()
        # runs "ldconfig -p", which would add ~5 ms to every task start.
        _libc = ctypes.CDLL(None, use_errno=True)
    _libc.prctl(option, value, 0, 0, 0)


def set_parent_death_signal(sig: int) -> None:
    """Have the kernel send ``sig`` to this process when the thread that forked it dies."""
    _prctl(PR_SET_PDEATHSIG, sig)


def become_subreaper() -> None:
    """Orphaned descendants are reparented to this process instead of init, so a process
    that left our process group with setsid() can still be found (and killed)."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (all its threads'), from /proc; [] where unavailable."""
    result: list[int] = []
    with contextlib.suppress(OSError):
        for thread in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                result.extend(int(child) for child in (thread / "children").read_text().split())
    return result


def descendants(pid: int) -> list[int]:
    """Every descendant of ``pid``, parents before their children."""
    found: list[int] = []
    queue = children(pid)
    while queue:
        child = queue.pop(0)
        if child not in found:
            found.append(child)
            queue.extend(children(child))
    return found


def environ(pid: int) -> list[bytes]:
    """The environment ``pid`` started with ([] if it is gone or not ours to read)."""
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\x00")
    except OSError:
        return []
