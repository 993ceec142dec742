"""The acting loop: filter beliefs with the posterior at every real step, plan, act (paper Alg. 1).

`Agent` handles E environments side by side: one batched posterior update and one batched CEM plan
per step. `run_episodes` steps real environments with it (or with uniform random actions, for the
seed episodes: `collect_seed_episodes`) and returns replay `Episode`s laid out as `planet.replay`
documents.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from planet.config import Config
from planet.envs import PixelEnv, episode_seed
from planet.loss import preprocess_obs
from planet.model import LatentState, WorldModel
from planet.planner import Planner, shift_plan
from planet.replay import Episode, episode_path, save_episode


class Agent:
    """Beliefs over E envs, updated with each real frame (`observe`), and the planner's next action (`act`)."""

    def __init__(self, model: WorldModel, planner: Planner, generator: torch.Generator, bit_depth: int = 8):
        self.model = model
        self.planner = planner
        self.generator = generator
        self.bit_depth = bit_depth
        self.device = next(model.parameters()).device
        self.latent: LatentState | None = None
        self.prev_action: torch.Tensor | None = None
        self.plan: torch.Tensor | None = None  # (T, E, A), the last refit mean, for warm starts

    def reset(self, envs: int) -> None:
        """Zero belief and state and a zero previous action, as at the start of every training sequence."""
        self.latent = self.model.rssm.initial(envs, self.device)
        self.prev_action = torch.zeros(envs, self.model.action_size, device=self.device)
        self.plan = None

    def observe(self, obs: np.ndarray) -> None:
        """obs (E, S, S, 3) uint8, the frames the previous actions led to."""
        frames = preprocess_obs(torch.as_tensor(obs, device=self.device), self.bit_depth, self.generator)
        noise = torch.randn(self.latent.state.shape, generator=self.generator, device=self.device)
        with torch.no_grad():
            embed = self.model.encode(frames)  # (E, embed)
            self.latent, _ = self.model.rssm.posterior_step(self.latent, self.prev_action, embed, noise)

    def act(self, exploration_noise: float = 0.0) -> np.ndarray:
        """Plan from the current beliefs; Gaussian exploration noise when collecting. -> (E, A) in [-1, 1]."""
        warm = self.plan is not None and self.planner.cfg.warm_start
        self.plan = self.planner.plan_sequence(self.latent, self.generator, shift_plan(self.plan) if warm else None)
        action = self.plan[0]  # (E, A)
        if exploration_noise:  # config refuses negative noise
            noise = torch.randn(action.shape, generator=self.generator, device=self.device)
            action = action + exploration_noise * noise
        self.prev_action = action.clamp(-1.0, 1.0)
        return self.prev_action.cpu().numpy()


def run_episodes(envs: list[PixelEnv], seeds: list[int], agent: Agent | None = None,
                 exploration_noise: float = 0.0, rng: np.random.Generator | None = None,
                 progress: Callable[[], None] | None = None) -> list[Episode]:
    """Run one episode per env side by side. agent None: uniform random actions from `rng`.

    `progress`, if given, is called once per agent step (for a progress bar)."""
    count = len(envs)
    frames = [[env.reset(seed)] for env, seed in zip(envs, seeds)]
    actions: list[list[np.ndarray]] = [[] for _ in envs]
    rewards: list[list[float]] = [[] for _ in envs]
    ends: list[list[tuple[bool, bool]]] = [[] for _ in envs]
    done = [False] * count
    if agent is not None:
        agent.reset(count)
    action_size = envs[0].action_size
    while not all(done):
        if agent is not None:
            agent.observe(np.stack([f[-1] for f in frames]))
            batch_actions = agent.act(exploration_noise)
        else:
            batch_actions = rng.uniform(-1.0, 1.0, size=(count, action_size)).astype(np.float32)
        for i, env in enumerate(envs):
            if done[i]:
                continue  # finished envs idle while the others run; their actions are discarded
            result = env.step(batch_actions[i])
            frames[i].append(result.obs)
            actions[i].append(batch_actions[i])
            rewards[i].append(result.reward)
            ends[i].append((result.terminated, result.truncated))
            done[i] = result.terminated or result.truncated
        if progress is not None:
            progress()
    return [Episode(obs=np.stack(frames[i]), action=np.stack(actions[i]).astype(np.float32),
                    reward=np.asarray(rewards[i], dtype=np.float32),
                    terminal=np.array([e[0] for e in ends[i]]), truncated=np.array([e[1] for e in ends[i]]))
            for i in range(count)]


def collect_seed_episodes(cfg: Config, folder: Path, on_episode: Callable[[], object] | None = None) -> int:
    """`data.seed_episodes` uniform-random episodes into `folder` (emptied first) -> how many."""
    rng = np.random.default_rng([cfg.seed, 2])
    env = PixelEnv(cfg.env)
    shutil.rmtree(folder, ignore_errors=True)
    for index in range(cfg.data.seed_episodes):
        (episode,) = run_episodes([env], [episode_seed(cfg.seed, index)], rng=rng)
        save_episode(episode_path(folder, index), episode)
        if on_episode is not None:
            on_episode()
    env.close()
    return cfg.data.seed_episodes
