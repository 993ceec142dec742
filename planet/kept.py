"""Kept training runs: where a run is set aside, never deleted, when settings that shape training
change. Changing the settings back takes the run back, and it resumes.

A kept run is a folder `<kept>/<fingerprint>/` holding the run's checkpoints and replay (moved, not
copied) and `run.json` (iteration, env, the keys that differ from the run after it, when it was kept).
"""
from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

from planet.fileio import write_json


def keep(kept: Path, run_id: str, parts: dict[str, Path], info: dict) -> Path:
    """Move each of `parts` (name -> folder) into `kept/<run_id>/<name>`, with `info` beside them."""
    target = kept / run_id
    if target.exists():  # the same run kept twice: keep both
        target = kept / f"{run_id}-{dt.datetime.now().strftime('%Y%m%d%H%M%S')}"
    target.mkdir(parents=True)
    for name, folder in parts.items():
        if folder.exists():
            shutil.move(str(folder), str(target / name))
    write_json(target / "run.json", {**info, "kept_at": dt.datetime.now().isoformat(timespec="seconds")})
    return target


def take_back(kept: Path, run_id: str, parts: dict[str, Path]) -> bool:
    """Move a kept run's parts back into their folders (which must not exist); False if none is kept."""
    source = kept / run_id
    if not source.is_dir():
        return False
    for name, folder in parts.items():
        if (source / name).exists():
            folder.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(source / name), str(folder))
    shutil.rmtree(source)
    return True


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def kept_runs(kept: Path) -> list[tuple[str, dict, int]]:
    """(id, run.json, bytes) of each kept run, oldest first."""
    runs = []
    for folder in sorted(kept.glob("*/"), key=lambda p: p.stat().st_mtime) if kept.is_dir() else []:
        info_path = folder / "run.json"
        info = json.loads(info_path.read_text()) if info_path.exists() else {}
        runs.append((folder.name, info, folder_size(folder)))
    return runs
