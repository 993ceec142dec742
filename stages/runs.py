"""Kept training runs: where `train` sets a run aside, instead of deleting it, when settings that
shape training change. Changing the settings back takes the run back and resumes it.

    python -m stages.runs                   # list kept runs: id, iterations, env, size, what differs
    python -m stages.runs --remove ID ...   # delete the named kept runs
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
from pathlib import Path

from stages.common import CHECKPOINT_DIR, REPLAY_DIR, StageError, entry_point, write_json

KEPT_DIR = Path(".planet/runs")
PARTS = {"checkpoints": CHECKPOINT_DIR, "replay": REPLAY_DIR}


def keep(run_id: str, info: dict) -> Path:
    """Move checkpoints/ and data/replay/ into KEPT_DIR/<run_id>/, with `info` beside them."""
    target = KEPT_DIR / run_id
    if target.exists():  # the same run kept twice: keep both
        target = KEPT_DIR / f"{run_id}-{dt.datetime.now().strftime('%Y%m%d%H%M%S')}"
    target.mkdir(parents=True)
    for name, folder in PARTS.items():
        if folder.exists():
            shutil.move(str(folder), str(target / name))
    write_json(target / "run.json", {**info, "kept_at": dt.datetime.now().isoformat(timespec="seconds")})
    return target


def take_back(run_id: str) -> bool:
    """Move a kept run back into checkpoints/ and data/replay/ (which must not exist); False if none."""
    source = KEPT_DIR / run_id
    if not source.is_dir():
        return False
    for name, folder in PARTS.items():
        if (source / name).exists():
            folder.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(source / name), str(folder))
    shutil.rmtree(source)
    return True


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def kept_runs() -> list[tuple[str, dict, int]]:
    """(id, run.json, bytes) of each kept run, oldest first."""
    runs = []
    for folder in sorted(KEPT_DIR.glob("*/"), key=lambda p: p.stat().st_mtime) if KEPT_DIR.is_dir() else []:
        info_path = folder / "run.json"
        info = json.loads(info_path.read_text()) if info_path.exists() else {}
        runs.append((folder.name, info, folder_size(folder)))
    return runs


@entry_point
def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.runs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--remove", nargs="+", metavar="ID", help="delete these kept runs")
    args = parser.parse_args()
    runs = kept_runs()
    if args.remove:
        known = {run_id for run_id, _, _ in runs}
        unknown = [run_id for run_id in args.remove if run_id not in known]
        if unknown:
            raise StageError(f"no kept run {', '.join(unknown)} in {KEPT_DIR}/ (`python -m stages.runs` lists them)")
        for run_id in args.remove:
            shutil.rmtree(KEPT_DIR / run_id)
            print(f"removed kept run {run_id}")
        return
    if not runs:
        print(f"no kept runs in {KEPT_DIR}/")
        return
    print(f"{'id':<18} {'iterations':>10} {'size':>9}  {'env':<32} kept at              differs from the run after it")
    for run_id, info, size in runs:
        print(f"{run_id:<18} {info.get('iteration', '?'):>10} {size / 2**20:7.1f} MB  {info.get('env', '?'):<32} "
              f"{info.get('kept_at', '?'):<20} {', '.join(info.get('changed', [])) or '-'}")


if __name__ == "__main__":
    main()
