import torch
from test_replay import make_episode

from planet.dream import dream
from planet.model import WorldModel


def test_dream_shapes_and_clipping(tiny_model_cfg):
    model = WorldModel(tiny_model_cfg, 1, 16).eval()
    episode = make_episode(12, size=16)
    result = dream(model, episode, context=3, steps=5, generator=torch.Generator().manual_seed(0))
    assert result.real.shape == result.imagined.shape == (8, 16, 16, 3)
    assert result.imagined.dtype == result.real.dtype
    assert result.mse.shape == result.reward_true.shape == result.reward_pred.shape == (8,)
    assert (result.real == episode.obs[1:9]).all() and (result.reward_true == episode.reward[:8]).all()
    longer = dream(model, episode, context=3, steps=50, generator=torch.Generator().manual_seed(0))
    assert len(longer.mse) == 12  # clipped to the episode
