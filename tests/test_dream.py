import numpy as np
import torch
from test_replay import make_episode

from planet.dream import Dream, dream, return_error
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


def test_return_error_sums_only_the_open_loop_window():
    n = 10
    true = np.arange(n, dtype=np.float32)
    pred = true.copy()
    pred[:3] += 100.0  # context steps (filtered, not dreamed) must not count
    pred[3:5] += [2.0, 0.5]  # the first two dream steps: +2.5 in total
    frames = np.zeros((n, 4, 4, 3), np.uint8)
    result = Dream(frames, frames, np.zeros(n), true, pred)
    assert return_error(result, context=3, horizon=2) == 2.5
    assert return_error(result, context=3, horizon=7) == 2.5
    assert return_error(result, context=3, horizon=8) is None  # past the end of the dream
    pessimistic = Dream(frames, frames, np.zeros(n), true, true - 1.0)
    assert return_error(pessimistic, context=0, horizon=4) == -4.0


def test_a_dream_sees_only_its_context_frames(tiny_model_cfg):
    """The posterior filters the first `context` frames; after them only the prior and the recorded
    actions drive the dream, so frames after the context cannot change it, and a context frame can."""
    import dataclasses

    model = WorldModel(tiny_model_cfg, 1, 16).eval()
    episode = make_episode(12, size=16)
    rng = np.random.default_rng(1)
    later = episode.obs.copy()
    later[4:] = rng.integers(0, 256, later[4:].shape, dtype=np.uint8)  # frames o_4.. = after a context of 3
    earlier = episode.obs.copy()
    earlier[2] = 255 - earlier[2]  # o_2, a context frame

    def dreamed(obs):
        changed = dataclasses.replace(episode, obs=obs)
        return dream(model, changed, context=3, steps=6, generator=torch.Generator().manual_seed(0))

    base, after, before = dreamed(episode.obs), dreamed(later), dreamed(earlier)
    assert np.array_equal(after.imagined, base.imagined) and np.array_equal(after.reward_pred, base.reward_pred)
    assert not np.allclose(before.reward_pred[3:], base.reward_pred[3:])  # the dream starts from the context
