"""Linux process facilities (prctl, /proc) the daemon and task processes use; no-ops elsewhere."""

from __future__ import annotations

import contextlib
import ctypes
import os
import struct
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
IS_LINUX = sys.platform.startswith("linux")


IN_MODIFY = 0x00000002
IN_Q_OVERFLOW = 0x00004000
# struct inotify_event: int wd; uint32_t mask, cookie, len; char name[len].
_INOTIFY_EVENT = struct.Struct("iIII")

_libc: ctypes.CDLL | None = None


def _load_libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        # Loaded once, in the daemon, and inherited by every forked task: find_library()
        # runs "ldconfig -p", which would add ~5 ms to every task start.
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _prctl(option: int, value: int) -> None:
    if IS_LINUX:
        _load_libc().prctl(option, value, 0, 0, 0)


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


class FileWrites:
    """An inotify descriptor that becomes readable when one of ``names`` in ``directory`` is
    written to: a wake-up without polling. Linux only; raises ``OSError`` where unavailable.

    The directory is watched rather than the files, so a file created later (SQLite's
    "-wal", which goes away with the last connection) is covered too.
    """

    def __init__(self, directory: str, names: set[str]) -> None:
        if not IS_LINUX:
            raise OSError("inotify is Linux only")
        libc = _load_libc()
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        if libc.inotify_add_watch(fd, os.fsencode(directory), IN_MODIFY) < 0:
            errno = ctypes.get_errno()
            os.close(fd)
            raise OSError(errno, f"cannot watch {directory}")
        self._fd = int(fd)
        self._names = {os.fsencode(name) for name in names}

    def fileno(self) -> int:
        return self._fd

    def drain(self) -> bool:
        """Read every pending event without blocking; True if one concerned our files."""
        relevant = False
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return relevant
            offset = 0
            while offset < len(data):
                _wd, mask, _cookie, length = _INOTIFY_EVENT.unpack_from(data, offset)
                offset += _INOTIFY_EVENT.size
                name = data[offset : offset + length].rstrip(b"\0")
                offset += length
                # An overflowed queue lost events: some may have been ours.
                relevant = relevant or name in self._names or bool(mask & IN_Q_OVERFLOW)

    def close(self) -> None:
        os.close(self._fd)
