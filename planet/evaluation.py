"""Evaluation and dreams of a trained model on fresh episodes (paper Sec. 5: returns of the planner
without exploration noise), shared by the pipeline's stages and `python -m planet`."""
from __future__ import annotations

from collections.abc import Callable

import torch

from planet.agent import Agent, run_episodes
from planet.config import Config
from planet.envs import PixelEnv, episode_seed
from planet.model import WorldModel
from planet.planner import Planner
from planet.replay import Episode
from planet.runtime import Runtime

EVAL_STREAM = 1  # env seeds disjoint from the training episodes'


def evaluation_seeds(seed: int, episodes: int) -> list[int]:
    """The env seeds of the evaluation episodes: fixed by `seed`, disjoint from training's."""
    return [episode_seed(seed, i, EVAL_STREAM) for i in range(episodes)]


def evaluate(model: WorldModel, cfg: Config, episodes: int, seed: int, runtime: Runtime | None = None,
             progress: Callable[[], None] | None = None) -> list[Episode]:
    """`episodes` planner episodes side by side, no exploration noise, each with its own fixed env
    seed; plans with `cfg.evaluation_planner()` (the horizon `evaluate.horizon` when set) on `runtime`
    (default: fp32, eager, on the model's device)."""
    device = next(model.parameters()).device
    runtime = runtime or Runtime(device)
    envs = [PixelEnv(cfg.env) for _ in range(episodes)]
    try:
        planner = Planner(model, cfg.evaluation_planner(), runtime)
        agent = Agent(model, planner, torch.Generator(device).manual_seed(seed + 1), cfg.train.bit_depth)
        return run_episodes(envs, evaluation_seeds(seed, episodes), agent, exploration_noise=0.0, progress=progress)
    finally:
        for env in envs:
            env.close()
