import numpy as np
import pytest
import torch
from test_replay import make_episode

from planet.agent import run_episodes
from planet.config import Config, EnvConfig, PlannerConfig, RuntimeConfig, TrainConfig
from planet.envs import PixelEnv
from planet.replay import SequenceSampler
from planet.runtime import PLAIN
from planet.trainer import NonFiniteError, Trainer

# fp32: `auto` times a probe, whose verdict may change under load; eager: compiling costs seconds per test
FP32 = RuntimeConfig(precision="fp32", compile=False)


def tiny(tiny_model_cfg, **train):
    return Config(env=EnvConfig(id="PlanetCounter-v0", image_size=16, action_repeat=1), model=tiny_model_cfg,
                  train=TrainConfig(steps_per_iteration=4, batch_size=2, seq_len=4, **train), runtime=FP32)


def test_iteration_returns_every_term_and_collects(tiny_model_cfg):
    cfg = tiny(tiny_model_cfg)
    trainer = Trainer(cfg, 1, PLAIN)
    sampler = SequenceSampler([make_episode(12, size=16)], 4, trainer.rng)
    stats = trainer.train_iteration(sampler, 0)
    assert set(stats) == {"total", "recon", "reward", "kl", "overshoot", "grad_norm"}
    assert all(np.isfinite(v) for v in stats.values())
    episodes = trainer.collect([PixelEnv(cfg.env), PixelEnv(cfg.env)], [0, 1])
    assert [len(e) for e in episodes] == [12, 12]


def test_non_finite_loss_names_iteration_and_term(tiny_model_cfg):
    trainer = Trainer(tiny(tiny_model_cfg), 1, PLAIN)
    sampler = SequenceSampler([make_episode(12, size=16)], 4, trainer.rng)
    with torch.no_grad():
        trainer.model.reward.net[-1].bias.fill_(float("nan"))
    with pytest.raises(NonFiniteError, match=r"iteration 7: reward became nan at gradient step 1"):
        trainer.train_iteration(sampler, 6)


def test_a_trained_model_plans_far_better_than_random_actions(tiny_model_cfg):
    """Closed loop: random episodes -> replay -> world model -> CEM in its latent space -> the env.

    On the square task (reward = x / 16, actions move the square) planning pushes right from the
    first step; random actions wander. Breaks if time alignment, reward head, planner or action
    scaling is wrong anywhere on that path."""
    torch.manual_seed(0)
    cfg = Config(env=EnvConfig(id="PlanetSquare-v0", image_size=16, action_repeat=1), model=tiny_model_cfg,
                 train=TrainConfig(steps_per_iteration=100, batch_size=16, seq_len=8, lr=3e-3),
                 planner=PlannerConfig(candidates=100, top_k=10, horizon=6, iterations=4), runtime=FP32)
    trainer = Trainer(cfg, 1, PLAIN)
    envs = [PixelEnv(cfg.env) for _ in range(8)]
    random_episodes = run_episodes(envs, list(range(8)), rng=np.random.default_rng(0))
    sampler = SequenceSampler(random_episodes, cfg.train.seq_len, trainer.rng)
    for iteration in range(3):
        trainer.train_iteration(sampler, iteration)
    trainer.model.eval()
    seeds = list(range(100, 108))
    planned = np.mean([e.total_reward for e in run_episodes(envs, seeds, trainer.make_agent())])
    random = np.mean([e.total_reward for e in run_episodes(envs, seeds, rng=np.random.default_rng(1))])
    best = np.mean([e.total_reward for e in run_episodes(envs, seeds, FullRight())])
    assert planned > random + 0.6 * (best - random), (planned, random, best)


class FullRight:
    """An 'agent' that always pushes right: the square task's best return, for scale."""

    def reset(self, envs: int) -> None:
        self.envs = envs

    def observe(self, obs: np.ndarray) -> None:
        pass

    def act(self, exploration_noise: float = 0.0) -> np.ndarray:
        return np.ones((self.envs, 1), np.float32)
