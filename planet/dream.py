"""Open-loop dreams: filter `context` real frames, then roll the prior with the recorded actions.

Shows how far the model's imagination stays faithful: per step reconstruction error and predicted
versus true reward along the dream (seed: `visualize_dream`).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from planet.loss import preprocess_obs
from planet.model import WorldModel
from planet.replay import Episode


class Dream(NamedTuple):
    real: np.ndarray  # (N, S, S, 3) uint8, the replay frames o_1..o_N
    imagined: np.ndarray  # (N, S, S, 3) uint8, posterior reconstructions, then prior predictions
    mse: np.ndarray  # (N,) per-pixel squared error in [0, 1] units
    reward_true: np.ndarray  # (N,)
    reward_pred: np.ndarray  # (N,)


@torch.no_grad()
def dream(model: WorldModel, episode: Episode, context: int, steps: int, generator: torch.Generator,
          bit_depth: int = 8) -> Dream:
    """context + steps frames from the start of `episode` (clipped to its length)."""
    device = next(model.parameters()).device
    total = min(context + steps, len(episode))
    context = min(context, total)
    # Replay layout: frame t+1 pairs with action t and reward t (see planet.replay).
    obs = torch.as_tensor(episode.obs[1 : total + 1], device=device)[:, None]  # (N, 1, S, S, 3)
    action = torch.as_tensor(episode.action[:total], device=device)[:, None]  # (N, 1, A)
    frames = preprocess_obs(obs, bit_depth, generator)
    latent = model.rssm.initial(1, device)
    features = []
    for t in range(total):
        noise = torch.randn(latent.state.shape, generator=generator, device=device)
        if t < context:
            embed_part = model.rssm.embed_part(model.encode(frames[t]))
            latent, _ = model.rssm.posterior_step(latent, action[t], embed_part, noise)
        else:
            latent, _ = model.rssm.imagine_step(latent, action[t], noise)
        features.append(model.features(latent))
    features = torch.stack(features)  # (N, 1, H+Z)
    imagined = model.decode(features)[:, 0].float()  # (N, S, S, 3)
    mse = (imagined - frames[:, 0].float()).square().mean(dim=(1, 2, 3))
    reward_pred = model.reward(features)[:, 0].float()
    to_uint8 = (imagined * 255).round().clamp(0, 255).to(torch.uint8)
    return Dream(episode.obs[1 : total + 1], to_uint8.cpu().numpy(), mse.cpu().numpy(),
                 episode.reward[:total].copy(), reward_pred.cpu().numpy())


def return_error(result: Dream, context: int, horizon: int) -> float | None:
    """Predicted minus true return over the first `horizon` open-loop steps of a dream: what a plan
    of that length is scored with, against what it earned. Positive = the model is optimistic.
    None when the dream is shorter than `horizon`."""
    if context + horizon > len(result.reward_pred):
        return None
    window = slice(context, context + horizon)
    return float(result.reward_pred[window].sum() - result.reward_true[window].sum())
