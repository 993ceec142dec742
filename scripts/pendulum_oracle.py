"""Ceiling for the evaluation: CEM planning with Pendulum-v1's *true* dynamics, on the same env seeds.

    python scripts/pendulum_oracle.py metrics/eval.json [--repeat 4] [--horizon 12] [--candidates 500]
        [--top-k 50] [--iterations 8] [--cold]
    python scripts/pendulum_oracle.py --seed 1      # the 10 env seeds `evaluate` uses for `seed: 1`

Same planner as `planet.planner` (actions in [-1, 1] of the torque range, std starting at 1, refit to
the top k), but scoring with the real equations of motion and reward instead of a learned model.
`--cold` starts every plan from zero (the paper); the default warm-starts from the last plan. The
mean it prints is what a perfect world model would score with this planner on these episodes.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

MAX_TORQUE, DT, G, MAX_SPEED = 2.0, 0.05, 10.0, 8.0


def step(angle, speed, torque):
    """Pendulum-v1's equations (gymnasium/envs/classic_control/pendulum.py), vectorised."""
    torque = np.clip(torque, -MAX_TORQUE, MAX_TORQUE)
    cost = (((angle + np.pi) % (2 * np.pi)) - np.pi) ** 2 + 0.1 * speed**2 + 0.001 * torque**2
    speed = np.clip(speed + (3 * G / 2 * np.sin(angle) + 3.0 * torque) * DT, -MAX_SPEED, MAX_SPEED)
    return angle + speed * DT, speed, -cost


def plan(angle, speed, mean, args, rng):
    std = np.ones_like(mean)
    for _ in range(args.iterations):
        actions = np.clip(mean + std * rng.standard_normal((args.candidates, len(mean))), -1, 1)
        a, s, returns = np.full(args.candidates, angle), np.full(args.candidates, speed), 0.0
        for t in range(len(mean)):
            for _ in range(args.repeat):
                a, s, reward = step(a, s, actions[:, t] * MAX_TORQUE)
                returns = returns + reward
        elites = actions[np.argsort(returns)[-args.top_k:]]
        mean, std = elites.mean(0), elites.std(0) + 1e-4
    return mean


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
    if args.eval_json:
        env_seeds = json.load(open(args.eval_json))["env_seeds"]
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for planet/ and stages/
        from planet.envs import episode_seed
        from stages.evaluate import EVAL_STREAM
        env_seeds = [episode_seed(args.seed, i, EVAL_STREAM) for i in range(10)]
    returns = []
    for seed in env_seeds:
        env = gym.make("Pendulum-v1")
        env.reset(seed=seed)
        angle, speed = env.unwrapped.state
        rng, mean, total = np.random.default_rng(0), np.zeros(args.horizon), 0.0
        for _ in range(200 // args.repeat):
            mean = plan(angle, speed, np.zeros(args.horizon) if args.cold else mean, args, rng)
            for _ in range(args.repeat):
                angle, speed, reward = step(angle, speed, mean[0] * MAX_TORQUE)
                total += reward
            mean = np.r_[mean[1:], 0.0]
        returns.append(round(float(total), 1))
    print(json.dumps({"returns": returns, "return_mean": round(float(np.mean(returns)), 1), **vars(args)}))


if __name__ == "__main__":
    main()
