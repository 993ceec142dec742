"""Per-module mutation testing results of the last `mutmut run` (read from mutants/**/*.meta).

Prints killed, survived and the rest per module and overall; exit 1 if fewer than --target percent of
the tested mutants were killed (a timeout counts as killed, as mutmut counts it)."""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

KILLED, SURVIVED = (1, 3, 24, -24, 36, 152, 255), 0


def module_counts(meta: Path) -> Counter:
    codes = json.loads(meta.read_text())["exit_code_by_key"].values()
    return Counter("killed" if c in KILLED else "survived" if c == SURVIVED else "not run" if c is None
                   else "no tests" if c in (5, 33) else "other" for c in codes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mutants", type=Path, default=Path("mutants"))
    parser.add_argument("--target", type=float, default=90.0, help="percent of mutants to kill")
    args = parser.parse_args()
    metas = sorted(args.mutants.glob("planet/*.py.meta"))
    if not metas:
        print(f"no mutation results under {args.mutants}/: run `make mutation` first", file=sys.stderr)
        return 1
    total = Counter()
    print(f"{'module':<22} {'killed':>7} {'survived':>8} {'no tests':>8} {'other':>6} {'killed %':>8}")
    for meta in metas:
        counts = module_counts(meta)
        total += counts
        print(row(meta.name.removesuffix(".meta"), counts))
    print(row("all", total))
    score = percent(total)
    if total["not run"]:
        print(f"{total['not run']} mutants not run: the run was interrupted", file=sys.stderr)
    return 0 if score >= args.target and not total["not run"] else 1


def percent(counts: Counter) -> float:
    tested = counts["killed"] + counts["survived"] + counts["no tests"] + counts["other"]
    return 100.0 * counts["killed"] / max(tested, 1)


def row(name: str, counts: Counter) -> str:
    return (f"{name:<22} {counts['killed']:>7} {counts['survived']:>8} {counts['no tests']:>8} "
            f"{counts['other']:>6} {percent(counts):>7.1f}%")


if __name__ == "__main__":
    sys.exit(main())
