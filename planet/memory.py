"""The process's malloc setting: glibc keeps freed memory for reuse (`keep_freed_memory`)."""
from __future__ import annotations

import ctypes
import ctypes.util

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the kernel.

    A train step allocates and frees tensors of tens of MB (the convolutions' activations over all
    T*B frames). By default glibc serves those with mmap and unmaps them on free, so the next step
    faults every page in again and the kernel zeroes it: about 140k page faults and 12% of a step's
    CPU time in the kernel on a 2-core AMD EPYC. Serving everything from the heap and never trimming
    it removes that (docs/performance.md has the figures). It changes no result;
    the process keeps its peak memory until it exits. Process-wide, so only entry points call it.
    Returns False where the C library is not glibc (then nothing changes)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success. The trim threshold is an int: 2**31 - 1 bytes is "never" here.
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
