"""Process-level tuning of the API server."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
PR_SET_PDEATHSIG = 1


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def tune_malloc(mmap_threshold: int = 1 << 20, trim_threshold: int = 32 << 20) -> bool:
    """Serve blocks below ``mmap_threshold`` from the heap and keep up to ``trim_threshold`` free.

    Every TLS read asks for a 256 KiB buffer (uvloop's read size) and shrinks it to the one record
    it got (16 KiB at most). Above glibc's default 128 KiB threshold each of those buffers is an
    mmap, a mremap and a munmap: three system calls and fresh page faults per 16 KiB received (the
    event loop's system time during a TLS upload halved without them). A no-op without glibc.
    """
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))


def die_with_parent(parent_pid: int) -> None:
    """Get SIGTERM when the parent process ends, however it ends (Linux ``PR_SET_PDEATHSIG``).

    An API process of ``serve --workers N`` must not keep answering on the shared port after its
    parent, which runs the dispatcher, was killed: tasks would be queued that nobody runs. If the
    parent is already gone when this runs, the process ends at once.
    """
    prctl = getattr(_libc(), "prctl", None)
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGTERM)


def lower_priority(nice: int) -> int:
    """Raise this process's nice value to ``nice`` unless it is already higher; returns the value now.

    Only ever lowers the priority (raising it needs privileges), so a higher ``Nice=`` set by the
    service manager stands. Called before threads start: on Linux each thread has its own value,
    and new threads and child processes inherit their creator's.
    """
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if nice > current:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
        return nice
    return current
