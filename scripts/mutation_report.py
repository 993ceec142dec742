"""Per-module mutation testing results of the last `mutmut run` (read from mutants/**/*.meta).

Prints killed, survived and the rest per module and overall; exit 1 if fewer than --target percent of
the tested mutants were killed (a timeout counts as killed, as mutmut counts it). `--survivors` also
prints each surviving mutant as a diff against the original line (faster than `mutmut show`)."""
from __future__ import annotations

import argparse
import ast
import difflib
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
    parser.add_argument("--survivors", action="store_true", help="print each surviving mutant's change")
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
    if args.survivors:
        for meta in metas:
            print_survivors(meta)
    score = percent(total)
    if total["not run"]:
        print(f"{total['not run']} mutants not run: the run was interrupted", file=sys.stderr)
    return 0 if score >= args.target and not total["not run"] else 1


def print_survivors(meta: Path) -> None:
    """Each survivor's function, mutated, against the original: the changed lines only."""
    source = meta.with_suffix("").read_text()  # mutants/planet/x.py
    functions = {node.name: ast.get_source_segment(source, node)
                 for node in ast.walk(ast.parse(source)) if isinstance(node, ast.FunctionDef)}
    for key, code in json.loads(meta.read_text())["exit_code_by_key"].items():
        if code != SURVIVED:
            continue
        name = key.rsplit(".", 1)[-1]  # planet.replay.x_load_episode__mutmut_6 -> x_load_episode__mutmut_6
        original = functions.get(name.rsplit("__mutmut_", 1)[0] + "__mutmut_orig", "")
        changed = [line for line in difflib.unified_diff(original.splitlines(), functions.get(name, "").splitlines(),
                                                         lineterm="", n=0)
                   if line[:1] in "+-" and not line.startswith(("+++", "---")) and "__mutmut_" not in line]
        print(f"{key}:", *changed, sep="\n    ")


def percent(counts: Counter) -> float:
    tested = counts["killed"] + counts["survived"] + counts["no tests"] + counts["other"]
    return 100.0 * counts["killed"] / max(tested, 1)


def row(name: str, counts: Counter) -> str:
    return (f"{name:<22} {counts['killed']:>7} {counts['survived']:>8} {counts['no tests']:>8} "
            f"{counts['other']:>6} {percent(counts):>7.1f}%")


if __name__ == "__main__":
    sys.exit(main())
