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
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
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
    # Read after every reap by the daemon: plain os calls, not pathlib (a third of the cost).
    result: list[int] = []
    with contextlib.suppress(OSError):
        for thread in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{thread}/children") as f:
                result.extend(int(child) for child in f.read().split())
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

    The files themselves are watched, so writes to their neighbours (another database, a log
    file) wake no one. The directory is watched only for files being created: SQLite's
    "-wal" goes away with the last connection and comes back as a new file.
    """

    def __init__(self, directory: str, names: set[str]) -> None:
        if not IS_LINUX:
            raise OSError("inotify is Linux only")
        self._libc = _load_libc()
        fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self._fd = int(fd)
        self._directory = directory
        self._names = {os.fsencode(name) for name in names}
        self._files: dict[int, bytes] = {}  # watch descriptor -> name
        try:
            self._directory_wd = self._watch(directory, IN_CREATE | IN_MOVED_TO)
            for name in self._names:
                self._watch_file(name)
        except OSError:
            os.close(self._fd)
            raise

    def _watch(self, path: str | bytes, mask: int) -> int:
        wd = int(self._libc.inotify_add_watch(self._fd, os.fsencode(path), mask))
        if wd < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"cannot watch {os.fsdecode(path)}: {os.strerror(errno)}")
        return wd

    def _watch_file(self, name: bytes) -> None:
        try:
            wd = self._watch(os.path.join(os.fsencode(self._directory), name), IN_MODIFY)
        except FileNotFoundError:  # OSError(ENOENT, ...) is one
            return  # not there yet: its creation is reported by the directory watch
        self._files[wd] = name

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
                wd, mask, _cookie, length = _INOTIFY_EVENT.unpack_from(data, offset)
                offset += _INOTIFY_EVENT.size
                name = data[offset : offset + length].rstrip(b"\0")
                offset += length
                if mask & IN_Q_OVERFLOW:
                    relevant = True  # events were lost: some may have been ours
                elif wd == self._directory_wd:
                    if name in self._names:
                        # A new file under one of our names. Out of watches, it goes unwatched:
                        # the daemon's stat() each second still sees it change.
                        with contextlib.suppress(OSError):
                            self._watch_file(name)
                        relevant = True
                elif mask & IN_IGNORED:
                    self._files.pop(wd, None)  # the file was deleted
                elif wd in self._files:
                    relevant = True

    def close(self) -> None:
        os.close(self._fd)


def host_key() -> str:
    """Which machine and pid namespace this process runs in: "<boot id>/<pid namespace>".

    Two processes with the same key can test each other's pids with kill(pid, 0); with
    different keys a pid means nothing to the other (another container, another machine,
    the same machine after a reboot), even when the host names are the same. "" where
    unknown (not Linux, /proc not mounted): no pid is then trusted.
    """
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid")
    except OSError:
        return ""
    if not boot_id:
        return ""
    return f"{boot_id}/{namespace.st_dev}:{namespace.st_ino}"
