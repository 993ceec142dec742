"""Kept training runs (`planet.kept`): where `train` sets a run aside, instead of deleting it, when
settings that shape training change. Changing the settings back takes the run back and resumes it.

    python -m experiments.runs                   # list kept runs: id, iterations, env, size, what differs
    python -m experiments.runs --remove ID ...   # delete the named kept runs
"""
from __future__ import annotations

import argparse
import shutil

from planet.kept import kept_runs
from stages.common import KEPT_DIR, StageError, entry_point


@entry_point
def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.runs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--remove", nargs="+", metavar="ID", help="delete these kept runs")
    args = parser.parse_args()
    runs = kept_runs(KEPT_DIR)
    if args.remove:
        known = {run_id for run_id, _, _ in runs}
        unknown = [run_id for run_id in args.remove if run_id not in known]
        if unknown:
            raise StageError(f"no kept run {', '.join(unknown)} in {KEPT_DIR}/ "
                             "(`python -m experiments.runs` lists them)")
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
