"""Learning curves of several runs side by side, and their numbers as a markdown table.

    python scripts/compare_runs.py results/v2-seed0 results/v2-seed1 results/v2-seed2 -o results/v2-seeds.png
    python scripts/compare_runs.py results/dmc-cartpole-swingup-seed{0,1,2} --reference 297 \
        --reference-label "PlaNet at 100k (CURL's Table 1)" -o results/dmc-cartpole-swingup-seeds.png

Each folder holds a run's `train.csv` (DVC's plots data, `plots/train.csv`), `eval.json`
(`metrics/eval.json`) and `params.yaml`, as in `results/`, and `timing.csv` (`plots/timing.csv`)
where the run kept its wall times apart. The figure shows the collection return
(thin: each episode; thick: mean of the last 5) with the evaluation mean and std at the final step,
and the reconstruction and reward losses; a dashed line marks the target (Pendulum's -200 unless
`--reference` gives another). The table's train time is the last `wall_time_s`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib
import pandas as pd
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load_run(folder: Path) -> tuple[pd.DataFrame, dict, dict]:
    missing = [name for name in ("train.csv", "eval.json", "params.yaml") if not (folder / name).is_file()]
    if missing:
        sys.exit(f"error: {folder}: missing {', '.join(missing)}")
    params = yaml.safe_load((folder / "params.yaml").read_text())
    curve = pd.read_csv(folder / "train.csv")
    if (folder / "timing.csv").is_file():  # newer runs keep wall times apart (`plots/timing.csv`)
        curve = curve.merge(pd.read_csv(folder / "timing.csv")[["iteration", "wall_time_s"]], on="iteration")
    return curve, json.loads((folder / "eval.json").read_text()), params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="result folders")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--reference", type=float, default=-200.0, help="the return to mark (default: -200)")
    parser.add_argument("--reference-label", default="target", help="its label (default: target)")
    args = parser.parse_args()
    runs = [(folder.name, *load_run(folder)) for folder in args.runs]  # a list: two folders may share a name

    fig, (ax_return, ax_recon, ax_reward) = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)
    print("| run | seed | env steps | eval return (10 ep.) | train time |\n|---|---|---|---|---|")
    for name, curve, evaluation, params in runs:
        line, = ax_return.plot(curve.env_steps, curve.collect_return, lw=0.6, alpha=0.5)
        ax_return.plot(curve.env_steps, curve.collect_return.rolling(5, min_periods=1).mean(),
                       color=line.get_color(), lw=2, label=f"{name}: eval {evaluation['return_mean']:.1f}")
        ax_return.errorbar(curve.env_steps.iloc[-1], evaluation["return_mean"], evaluation["return_std"],
                           color=line.get_color(), marker="o", capsize=4)
        ax_recon.plot(curve.env_steps, curve.recon, color=line.get_color(), label=name)
        ax_reward.plot(curve.env_steps, curve.reward, color=line.get_color(), label=name)
        print(f"| {name} | {params['seed']} | {curve.env_steps.iloc[-1]:,} | {evaluation['return_mean']:.1f} +- "
              f"{evaluation['return_std']:.1f} | {curve.wall_time_s.iloc[-1] / 60:.1f} min |")
    ax_return.axhline(args.reference, color="black", ls="--", lw=1, label=f"{args.reference_label} {args.reference:g}")
    ax_return.set(title="collection return (dot: evaluation, mean +- std)", xlabel="env steps")
    ax_recon.set(title="reconstruction loss", xlabel="env steps", yscale="log")
    ax_reward.set(title="reward loss", xlabel="env steps", yscale="log")
    for ax in (ax_return, ax_recon, ax_reward):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=90)
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
