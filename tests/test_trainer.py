import numpy as np
import pytest
import torch
from test_replay import make_episode

from planet.config import Config, EnvConfig, TrainConfig
from planet.envs import PixelEnv
from planet.replay import SequenceSampler
from planet.trainer import NonFiniteError, Trainer


def tiny(tiny_model_cfg, **train):
    return Config(env=EnvConfig(id="PlanetCounter-v0", image_size=16, action_repeat=1), model=tiny_model_cfg,
                  train=TrainConfig(steps_per_iteration=4, batch_size=2, seq_len=4, **train))


def test_iteration_returns_every_term_and_collects(tiny_model_cfg):
    cfg = tiny(tiny_model_cfg)
    trainer = Trainer(cfg, 1, torch.device("cpu"))
    sampler = SequenceSampler([make_episode(12, size=16)], 4, trainer.rng)
    stats = trainer.train_iteration(sampler, 0)
    assert set(stats) == {"total", "recon", "reward", "kl", "overshoot", "overshoot_reward", "grad_norm"}
    assert all(np.isfinite(v) for v in stats.values())
    episodes = trainer.collect([PixelEnv(cfg.env), PixelEnv(cfg.env)], [0, 1])
    assert [len(e) for e in episodes] == [12, 12]


def test_non_finite_loss_names_iteration_and_term(tiny_model_cfg):
    trainer = Trainer(tiny(tiny_model_cfg), 1, torch.device("cpu"))
    sampler = SequenceSampler([make_episode(12, size=16)], 4, trainer.rng)
    with torch.no_grad():
        trainer.model.reward.net[-1].bias.fill_(float("nan"))
    with pytest.raises(NonFiniteError, match=r"iteration 7: reward became nan at gradient step 1"):
        trainer.train_iteration(sampler, 6)
