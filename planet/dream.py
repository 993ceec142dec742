"""Open-loop dreams, like the paper's open-loop video predictions: filter `context` real
frames with the posterior, then roll the prior with the recorded actions.

Shows how far the model's imagination stays faithful: per step reconstruction error and predicted
versus true reward along the dream (seed: `visualize_dream`).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from planet.loss import preprocess_obs
from planet.model import WorldModel
from planet.plots import plot_dream
from planet.replay import Episode
from planet.video import dream_panel, write_gif, write_mp4

HORIZONS = (1, 5, 10, 20, 50)  # open-loop steps at which the metrics are reported


class Dream(NamedTuple):
    real: np.ndarray  # (N, S, S, 3) uint8, the replay frames o_1..o_N
    imagined: np.ndarray  # (N, S, S, 3) uint8, posterior reconstructions, then prior predictions
    mse: np.ndarray  # (N,) per-pixel squared error in [0, 1] units
    reward_true: np.ndarray  # (N,)
    reward_pred: np.ndarray  # (N,)


def dream(model: WorldModel, episode: Episode, context: int, steps: int, generator: torch.Generator,
          bit_depth: int = 8) -> Dream:
    """context + steps frames from the start of `episode` (clipped to its length)."""
    with torch.no_grad():
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
                latent, _ = model.rssm.posterior_step(latent, action[t], model.encode(frames[t]), noise)
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


class DreamReport(NamedTuple):
    errors: list[dict[str, Any]]  # per frame: episode, step, horizon (<= 0: context), mse
    rewards: list[dict[str, Any]]  # per frame: episode, step, reward_true, reward_predicted
    metrics: dict[str, float]  # mse_h{h} and return_error_h{h} averaged over the episodes


def write_dreams(model: WorldModel, episodes: list[Episode], context: int, steps: int, generator: torch.Generator,
                 out: Path, fps: int = 15, bit_depth: int = 8) -> DreamReport:
    """Dream from each episode; write out/videos/dream_<i>.mp4, out/gifs/dream_<i>.gif (real | imagined,
    green border: context, red: dream) and out/error.png. Replaces what `out` held."""
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    error_rows, reward_rows, errors, rewards = [], [], [], []
    return_errors: dict[int, list[float]] = {h: [] for h in HORIZONS}
    for i, episode in enumerate(episodes):
        result = dream(model, episode, context, steps, generator, bit_depth)
        panel = dream_panel(result.real, result.imagined, context)
        write_mp4(out / f"videos/dream_{i}.mp4", panel, fps)
        write_gif(out / f"gifs/dream_{i}.gif", panel, fps)
        errors.append(result.mse.tolist())
        rewards.append((result.reward_true.tolist(), result.reward_pred.tolist()))
        for h in HORIZONS:
            error = return_error(result, context, h)
            if error is not None:
                return_errors[h].append(error)
        for t, (mse, true, pred) in enumerate(zip(result.mse, result.reward_true, result.reward_pred)):
            error_rows.append({"episode": i, "step": t + 1, "horizon": t + 1 - context, "mse": float(mse)})
            reward_rows.append({"episode": i, "step": t + 1, "reward_true": float(true),
                                "reward_predicted": float(pred)})
    plot_dream(errors, rewards, context, out / "error.png")
    metrics = {}
    for h in HORIZONS:
        values = [r["mse"] for r in error_rows if r["horizon"] == h]
        if values:
            metrics[f"mse_h{h}"] = round(float(np.mean(values)), 6)
        if return_errors[h]:
            metrics[f"return_error_h{h}"] = round(float(np.mean(return_errors[h])), 3)
    return DreamReport(error_rows, reward_rows, metrics)
