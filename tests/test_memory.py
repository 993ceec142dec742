"""The process's malloc setting, checked by glibc's own accounting."""
import ctypes
import subprocess
import sys
from pathlib import Path

import pytest

# glibc's own accounting (mallinfo2): the heap's releasable top after a 64 MB block is allocated and
# freed, then the bytes in mmapped blocks and in use in the heap that a 64 MB tensor adds. argv[1] says whether to
# call keep_freed_memory first. A subprocess, because the setting is process-wide.
_MALLINFO = """
import ctypes, sys, torch
from planet.memory import keep_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks "
                                               "fordblks keepcost").split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype, libc.malloc.restype, libc.free.argtypes = Info, ctypes.c_void_p, [ctypes.c_void_p]
kept = keep_freed_memory() if sys.argv[1] == "1" else False
libc.free(libc.malloc(64 << 20))
releasable = libc.mallinfo2().keepcost
before = libc.mallinfo2()
buffer = torch.ones(16 << 20)  # 64 MB of float32
during = libc.mallinfo2()
print(kept, during.hblkhd - before.hblkhd, during.uordblks - before.uordblks, releasable)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(None), "mallinfo2"),
                    reason="glibc's malloc (2.33 or later)")
def test_keep_freed_memory_serves_big_tensors_from_the_heap_and_keeps_them_there():
    def accounting(keep: str) -> tuple[str, int, int, int]:
        out = subprocess.run([sys.executable, "-c", _MALLINFO, keep], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).parents[1]).stdout.split()
        return out[0], *(int(v) for v in out[1:])

    mb64 = 64 << 20
    # glibc's default: a block this big is its own mmap, unmapped again on free, so the next train step
    # faults its pages in anew.
    _, mapped, _, _ = accounting("0")
    assert mapped >= mb64
    kept, mapped, heap_used, releasable = accounting("1")
    assert kept == "True"
    assert mapped == 0 and heap_used >= mb64  # served from the heap
    assert releasable >= mb64  # and a freed block at the heap's top stays there, not handed back
