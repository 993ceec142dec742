import dataclasses

import numpy as np
import torch
from test_trainer import FP32

from planet.config import Config, EnvConfig, PlannerConfig, TrainConfig
from planet.evaluation import evaluate, evaluation_seeds
from planet.model import WorldModel


def test_evaluation_plans_without_the_training_exploration_noise(tiny_model_cfg):
    """Paper Sec. 5 scores the planner without exploration noise: whatever `train.exploration_noise`
    says, evaluation acts on the plans alone (one PlaNet port evaluated with the noise on)."""
    cfg = Config(env=EnvConfig(id="PlanetCounter-v0", image_size=16, action_repeat=1), model=tiny_model_cfg,
                 planner=PlannerConfig(candidates=16, top_k=4, horizon=3, iterations=2),
                 runtime=FP32, train=TrainConfig(exploration_noise=0.0))
    torch.manual_seed(0)
    model = WorldModel(tiny_model_cfg, 1, 16).eval()
    quiet = evaluate(model, cfg, episodes=2, seed=3)
    noisy = evaluate(model, dataclasses.replace(cfg, train=TrainConfig(exploration_noise=0.5)), episodes=2, seed=3)
    assert [len(e) for e in quiet] == [12, 12]
    assert all(np.array_equal(a.action, b.action) for a, b in zip(quiet, noisy))
    assert evaluation_seeds(3, 2) == evaluation_seeds(3, 2) != evaluation_seeds(4, 2)
