"""PNG figures for humans and MLflow (DVC renders the CSVs itself).

matplotlib is imported inside the functions, so `planet` still imports with just torch, numpy and
gymnasium."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training(rows: list[dict[str, Any]], path: str | Path) -> None:
    """The learning curves (one row per iteration: losses and collect return) against env steps, as a PNG."""
    plt = _pyplot()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    keys = ["collect_return", "recon", "reward", "kl", "overshoot", "grad_norm"]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6), constrained_layout=True)
    steps = [r["env_steps"] for r in rows]
    for ax, key in zip(axes.flat, keys):
        values = [r[key] for r in rows]
        ax.plot(steps, values, marker="." if len(rows) < 30 else None)
        ax.set_title(key)
        if key != "collect_return" and min(values) > 0:
            ax.set_yscale("log")  # losses fall by orders of magnitude; late progress stays visible
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_dream(errors: list[list[float]], rewards: list[tuple[list[float], list[float]]], context: int,
               path: str | Path) -> None:
    """Per-step pixel error of each dream, and its predicted against true rewards; `context` marks where
    filtering ends and open-loop imagination begins."""
    plt = _pyplot()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig, (ax_err, ax_rew) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for i, mse in enumerate(errors):
        ax_err.plot(range(1, len(mse) + 1), mse, label=f"episode {i}")
    ax_err.axvline(context + 0.5, color="green", ls="--", label="dream starts")
    ax_err.set(title="reconstruction MSE per pixel", xlabel="step", yscale="log")
    ax_err.legend(fontsize=8)
    for i, (true, pred) in enumerate(rewards):
        line, = ax_rew.plot(true, label=f"true {i}")
        ax_rew.plot(pred, ls="--", color=line.get_color(), label=f"predicted {i}")
    ax_rew.axvline(context - 0.5, color="green", ls="--")
    ax_rew.set(title="reward along the dream", xlabel="step")
    ax_rew.legend(fontsize=8)
    fig.savefig(path, dpi=90)
    plt.close(fig)
