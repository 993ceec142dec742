"""Atomic file writes: a temp file in the target's folder, fsync, then rename over the target.

A reader (or a resumed run) sees the old file or the new one, never half of one. Temp names start
with a dot and contain `.tmp` (`TEMP_GLOB`), so a run killed mid-write leaves litter that is easy
to find and sweep, and never a file that looks real.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

TEMP_GLOB = ".*.tmp*"


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path to write (same suffix, for tools that pick a format from it); on success it
    is fsynced and renamed over `path`, on failure removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_write(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Open a file for writing that replaces `path` atomically when the block ends without error."""
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        yield f
