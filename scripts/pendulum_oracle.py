"""Ceiling for the evaluation: the engine's CEM planner scoring with Pendulum-v1's *true* dynamics,
on the same env seeds as `evaluate`.

    python scripts/pendulum_oracle.py metrics/eval.json [--repeat 4] [--horizon 12] [--candidates 500]
        [--top-k 50] [--iterations 8] [--cold]
    python scripts/pendulum_oracle.py --seed 1      # the 10 env seeds `evaluate` uses for `seed: 1`

The planner is `planet.planner.Planner` itself; only its rollout step is replaced by the real
equations of motion and reward (the state is the pendulum's angle and speed). `--cold` starts every
plan from zero (the paper); the default warm-starts from the last plan. The mean it prints is what a
perfect world model would score with this planner on these episodes.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for planet/
from planet.config import PlannerConfig  # noqa: E402
from planet.evaluation import evaluation_seeds  # noqa: E402
from planet.model import LatentState  # noqa: E402
from planet.planner import Planner, shift_plan  # noqa: E402

MAX_TORQUE, DT, G, MAX_SPEED = 2.0, 0.05, 10.0, 8.0


def step(angle, speed, torque):
    """Pendulum-v1's equations (gymnasium/envs/classic_control/pendulum.py), vectorised (numpy or torch)."""
    lib = torch if isinstance(angle, torch.Tensor) else np
    torque = lib.clip(torque, -MAX_TORQUE, MAX_TORQUE)
    cost = (((angle + np.pi) % (2 * np.pi)) - np.pi) ** 2 + 0.1 * speed**2 + 0.001 * torque**2
    speed = lib.clip(speed + (3 * G / 2 * lib.sin(angle) + 3.0 * torque) * DT, -MAX_SPEED, MAX_SPEED)
    return angle + speed * DT, speed, -cost


def true_dynamics(repeat: int):
    """A planner step on the true dynamics: belief (M, 2) = angle, speed; action (M, 1) in [-1, 1]."""

    def rollout_step(model, latent, action, noise):
        angle, speed = latent.belief[:, 0], latent.belief[:, 1]
        total = torch.zeros_like(angle)
        for _ in range(repeat):
            angle, speed, reward = step(angle, speed, action[:, 0] * MAX_TORQUE)
            total = total + reward
        return LatentState(torch.stack([angle, speed], -1), latent.state), total

    return rollout_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_json", nargs="?", help="a metrics/eval.json (its env_seeds are replayed)")
    parser.add_argument("--seed", type=int, help="instead: the params' `seed`; replays evaluate's 10 env seeds")
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--horizon", type=int, default=12)
    parser.add_argument("--candidates", type=int, default=500)
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--cold", action="store_true", help="start every plan from zero, as in the paper")
    args = parser.parse_args()
    if (args.eval_json is None) == (args.seed is None):
        parser.error("give either a metrics/eval.json or --seed")
    env_seeds = json.load(open(args.eval_json))["env_seeds"] if args.eval_json else evaluation_seeds(args.seed, 10)
    cfg = PlannerConfig(candidates=args.candidates, top_k=args.top_k, horizon=args.horizon,
                        iterations=args.iterations)
    shapes = SimpleNamespace(action_size=1, cfg=SimpleNamespace(state_size=1))
    planner = Planner(shapes, cfg, step=true_dynamics(args.repeat))
    returns = []
    for seed in env_seeds:
        env = gym.make("Pendulum-v1")
        env.reset(seed=seed)
        angle, speed = env.unwrapped.state
        generator, plan, total = torch.Generator().manual_seed(0), None, 0.0
        for _ in range(200 // args.repeat):
            latent = LatentState(torch.tensor([[angle, speed]], dtype=torch.float64), torch.zeros(1, 1))
            plan = planner.plan_sequence(latent, generator, None if args.cold or plan is None else shift_plan(plan))
            for _ in range(args.repeat):
                angle, speed, reward = step(angle, speed, float(plan[0, 0, 0]) * MAX_TORQUE)
                total += reward
        returns.append(round(float(total), 1))
    print(json.dumps({"returns": returns, "return_mean": round(float(np.mean(returns)), 1), **vars(args)}))


if __name__ == "__main__":
    main()
