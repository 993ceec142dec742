"""The DMC benchmark's table and figure, generated from `results/dmc-<task>-seed<N>/`, never typed.

    python scripts/benchmark_table.py                  # rewrites the README's table, writes the figure
    python scripts/benchmark_table.py --results DIR --readme FILE --figure PNG

Per task: the mean ± std over seeds of each seed's 10-episode evaluation mean, each seed's figure,
the training time per run (from `wall_time_s`; an iteration that spanned a pause, a stopped process,
counts as three median iterations at most) and the machine it ran on (`run.json`, where the trial
wrote one), beside the published figures at 100k env steps. The figure has one panel per task: each
seed's collection return against env steps, its evaluation mean as a dot at the end, and the published
figures as lines. The table goes between the README's `<!-- benchmark-table -->` and
`<!-- /benchmark-table -->` lines.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

import matplotlib
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# (task, its name in the papers, PlaNet in CURL's Table 1, PlaNet in DrQ's Table 1, Dreamer in CURL's
# Table 1), mean and std at 100k env steps. CURL: Srinivas et al., ICML 2020 (PMLR 119), Table 1,
# "100K step scores"; DrQ: Kostrikov et al., ICLR 2021, Table 1, "100k step scores".
PUBLISHED = [
    ("cartpole-swingup", "cartpole swingup", (297, 39), (303, 71), (326, 27)),
    ("reacher-easy", "reacher easy", (20, 50), (140, 256), (314, 155)),
    ("cheetah-run", "cheetah run", (138, 88), (165, 123), (235, 137)),
    ("finger-spin", "finger spin", (136, 216), (95, 164), (341, 70)),
    ("cup-catch", "ball_in_cup catch", (0, 0), (198, 442), (246, 174)),
    ("walker-walk", "walker walk", (224, 48), (125, 57), (277, 12)),
]
START, END = "<!-- benchmark-table -->", "<!-- /benchmark-table -->"
_FOLDER = re.compile(r"^dmc-(?P<task>[a-z_-]+)-seed(?P<seed>\d+)$")


def load_results(results: Path) -> dict[str, dict[int, dict]]:
    """task -> seed -> {return_mean, curve (env_steps, collect_return, wall_time_s), env_steps}."""
    runs: dict[str, dict[int, dict]] = {}
    for folder in sorted(results.glob("dmc-*-seed*")):
        match = _FOLDER.match(folder.name)
        if not match or not (folder / "eval.json").is_file() or not (folder / "train.csv").is_file():
            continue
        curve = pd.read_csv(folder / "train.csv")
        if "wall_time_s" not in curve and (folder / "timing.csv").is_file():
            curve = curve.merge(pd.read_csv(folder / "timing.csv")[["iteration", "wall_time_s"]], on="iteration")
        evaluation = json.loads((folder / "eval.json").read_text())
        about = json.loads((folder / "run.json").read_text()) if (folder / "run.json").is_file() else {}
        runs.setdefault(match["task"], {})[int(match["seed"])] = {
            "return_mean": float(evaluation["return_mean"]), "curve": curve,
            "env_steps": int(curve["env_steps"].iloc[-1]),
            "hours": training_seconds(curve["wall_time_s"].tolist()) / 3600 if "wall_time_s" in curve else None,
            "machine": short_machine(about.get("machine", ""))}
    return runs


def training_seconds(wall_times: list[float]) -> float:
    """The run's training time from each iteration's end (`wall_time_s`), an iteration that took more
    than three times the median (the process was stopped, e.g. SIGSTOP) counted as three."""
    durations = [b - a for a, b in zip([0.0, *wall_times], wall_times)]
    longest = 3 * statistics.median(durations)
    return sum(min(d, longest) for d in durations)


def short_machine(name: str) -> str:
    """`Intel(R) Xeon(R) Processor @ 2.80GHz (avx512f, 2 cores)` -> `Intel Xeon @ 2.80GHz (avx512f, 2 cores)`."""
    return " ".join(re.sub(r"\((R|TM)\)|\b(Processor|CPU)\b", " ", name).split())


def training_time(seeds: dict[int, dict]) -> str:
    """`2.0-3.0 h`, or per machine where the trials say which: `8.0 h on AMD EPYC (avx2, 2 cores); 4.1 h on ...`."""
    by_machine: dict[str, list[float]] = {}
    for run in seeds.values():
        if run["hours"] is not None:
            by_machine.setdefault(run["machine"], []).append(run["hours"])
    spans = []
    for machine, hours in by_machine.items():
        span = f"{min(hours):.1f}-{max(hours):.1f} h" if len(hours) > 1 else f"{hours[0]:.1f} h"
        spans.append(f"{span} on {machine}" if machine else span)
    return "; ".join(spans) or "-"


def _pm(mean: float, std: float) -> str:
    return f"{mean:.0f} ± {std:.0f}"


def table(runs: dict[str, dict[int, dict]]) -> str:
    lines = ["| task | ours, mean ± std over seeds | each seed | env steps | training time per run | "
             "PlaNet (CURL) | PlaNet (DrQ) | Dreamer (CURL) |", "|---|---|---|---|---|---|---|---|"]
    for task, name, planet_curl, planet_drq, dreamer in PUBLISHED:
        seeds = runs.get(task, {})
        if seeds:
            means = [seeds[s]["return_mean"] for s in sorted(seeds)]
            ours = f"**{statistics.mean(means):.1f}** ± {statistics.stdev(means):.1f}" if len(means) > 1 \
                else f"**{means[0]:.1f}** (one seed)"
            each = ", ".join(f"{seeds[s]['return_mean']:.1f}" for s in sorted(seeds))
            steps = ", ".join(sorted({f"{run['env_steps']:,}" for run in seeds.values()}))
            time = training_time(seeds)
        else:
            ours, each, steps, time = "not run yet", "-", "-", "-"
        lines.append(f"| {name} | {ours} | {each} | {steps} | {time} | {_pm(*planet_curl)} | {_pm(*planet_drq)} | "
                     f"{_pm(*dreamer)} |")
    return "\n".join(lines)


def figure(runs: dict[str, dict[int, dict]], path: Path) -> None:
    fig, axes = plt.subplots(2, 3, figsize=(15, 8), constrained_layout=True)
    for ax, (task, name, planet_curl, planet_drq, dreamer) in zip(axes.flat, PUBLISHED):
        for seed, run in sorted(runs.get(task, {}).items()):
            line, = ax.plot(run["curve"]["env_steps"], run["curve"]["collect_return"], lw=1, alpha=0.8,
                            label=f"seed {seed} (collection)")
            ax.plot([run["env_steps"]], [run["return_mean"]], "o", color=line.get_color())
        for (mean, _), label, style in ((planet_curl, "PlaNet (CURL)", "--"), (planet_drq, "PlaNet (DrQ)", ":"),
                                        (dreamer, "Dreamer (CURL)", "-.")):
            ax.axhline(mean, color="gray", ls=style, lw=1, label=f"{label} {mean}")
        ax.set_title(name if task in runs else f"{name} (not run yet)")
        highest = max([dreamer[0], planet_curl[0], planet_drq[0],
                       *(run["curve"]["collect_return"].max() for run in runs.get(task, {}).values())])
        ax.set_ylim(0, 1.15 * highest)
        ax.set_xlim(0, 103_000)
        ax.set_xlabel("env steps")
        ax.set_ylabel("return")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("PlaNet on the DeepMind Control Suite at 100k env steps (dots: 10-episode evaluation mean)")
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_table(readme: Path, text: str) -> None:
    content = readme.read_text()
    if START not in content or END not in content:
        sys.exit(f"error: {readme}: no {START} ... {END} lines to put the table between")
    head, rest = content.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{text}\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--figure", type=Path, default=Path("results/dmc-benchmark.png"))
    args = parser.parse_args(argv)
    runs = load_results(args.results)
    text = table(runs)
    write_table(args.readme, text)
    figure(runs, args.figure)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
