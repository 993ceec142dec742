"""Atomic file writes: a temp file in the target's folder, fsync, then rename over the target.

A reader (or a resumed run) sees the old file or the new one, never half of one. Temp names start
with a dot and contain `.tmp` (`TEMP_GLOB`), so a run killed mid-write leaves litter that is easy
to find and sweep, and never a file that looks real.

A failed write (disk full, read-only folder) raises `OSError` whose `filename` is the target, so the
error names the file the user knows, and the previous file at that path is left untouched.

Crash tests: with `PLANET_CRASH_WRITING=<suffix>` in the environment, the process SIGKILLs itself in
the middle of writing a file whose path ends with `<suffix>` (after half the bytes reached the temp
file, before the rename): the worst moment for a kill, made repeatable.
"""
from __future__ import annotations

import json
import os
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

TEMP_GLOB = ".*.tmp*"


def _file_mode() -> int:
    """What `open(path, "w")` would give: 0o666 less the umask (mkstemp alone gives 0o600)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()
CRASH_ENV = "PLANET_CRASH_WRITING"


def _crash_if_asked(path: Path, tmp: Path) -> None:
    suffix = os.environ.get(CRASH_ENV)
    if suffix and path.as_posix().endswith(suffix):
        os.truncate(tmp, tmp.stat().st_size // 2)
        os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path to write (same suffix, for tools that pick a format from it); on success it
    is fsynced and renamed over `path`, on failure removed."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
        os.close(fd)
        tmp = Path(name)
        yield tmp
        _crash_if_asked(path, tmp)
        os.chmod(tmp, FILE_MODE)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise OSError(err.errno, f"cannot write ({err.strerror}); any previous version is kept", str(path)) from err
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


@contextmanager
def atomic_write(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Open a file for writing that replaces `path` atomically when the block ends without error."""
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        yield f


def write_text(path: Path, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows with the same keys -> a CSV file with a header; floats to 6 significant digits."""
    lines = [",".join(rows[0])] if rows else []
    lines += [",".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row.values()) for row in rows]
    write_text(path, "".join(f"{line}\n" for line in lines))
