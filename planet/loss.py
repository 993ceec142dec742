"""The PlaNet objective (paper Eq. 3 and Sec. 4 latent overshooting) and one gradient step.

Terms, each returned separately for logging:
    recon      pixel squared error summed over the image, mean over (T, B)          (seed)
    reward     squared error of the reward head, mean over (T, B), x reward_scale   (official: 10)
    kl         KL[q(s_t|h_t,e_t) || p(s_t|h_t)] summed over state dims, clamped below at
               free_nats per time step (official: 3, seed: 0), mean, x kl_beta
    overshoot  latent overshooting: KL[q(s_{t+d}) || p(s_{t+d} | d prior steps from t)] for
               d = 1..D, mean over all (t, d) pairs, x overshoot_beta. As in the seed, the start
               states and the posterior targets are detached, so only the prior path learns from it.
Overshooting runs D batched prior steps over all start times at once, not T x D tiny ones.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import NamedTuple

import torch
from torch import Tensor

from planet.config import TrainConfig
from planet.model import Gaussian, LatentState, Observed, WorldModel


class LossTerms(NamedTuple):
    """Scalar loss terms; `total` = recon + reward_scale * reward + kl_beta * kl + overshoot_beta * overshoot."""

    total: Tensor
    recon: Tensor
    reward: Tensor
    kl: Tensor
    overshoot: Tensor


LOSS_NAMES = LossTerms._fields


class TensorBatch(NamedTuple):
    obs: Tensor  # (T, B, S, S, 3) uint8
    action: Tensor  # (T, B, A)
    reward: Tensor  # (T, B)


def preprocess_obs(obs: Tensor, bit_depth: int = 8, generator: torch.Generator | None = None) -> Tensor:
    """uint8 -> float in [0, 1]. Below 8 bits: quantise, then add uniform dequantisation noise
    within a bin (official code's preprocessing, kept in [0, 1] for the sigmoid decoder)."""
    if bit_depth == 8:
        return obs.float() / 255.0
    bins = 2**bit_depth
    quantised = torch.div(obs, 2 ** (8 - bit_depth), rounding_mode="floor").float()
    noise = torch.rand(obs.shape, generator=generator, device=obs.device)
    return (quantised + noise) / bins


def kl_divergence(posterior: Gaussian, prior: Gaussian) -> Tensor:
    """KL[q || p] summed over the state dims, in fp32: (..., Z) -> (...)."""
    return torch.distributions.kl_divergence(posterior.distribution(), prior.distribution())


def overshooting(model: WorldModel, observed: Observed, action: Tensor, depth: int, noise: Tensor) -> Tensor:
    """Mean KL over every (start t, distance d) pair with t + d < T, d <= depth.

    action (T, B, A) holds the previous action of each frame; noise (depth, T-1, B, Z). At distance d
    only starts 0..T-1-d are valid, so the batch shrinks as d grows.
    """
    steps = observed.beliefs.shape[0]
    latent = LatentState(observed.beliefs[:-1].detach(), observed.states[:-1].detach())  # (T-1, B, .)
    target = Gaussian(observed.posterior.mean.detach(), observed.posterior.std.detach())
    kl_total = observed.beliefs.new_zeros((), dtype=torch.float32)
    pairs = 0
    for d in range(1, min(depth, steps - 1) + 1):
        starts = steps - d
        latent = LatentState(latent.belief[:starts], latent.state[:starts])
        latent, prior = model.rssm.imagine_step(latent, action[d:d + starts], noise[d - 1, :starts])
        goal = Gaussian(target.mean[d:d + starts], target.std[d:d + starts])
        kl_total = kl_total + kl_divergence(goal, prior).sum()  # (starts, B) summed
        pairs += starts * action.shape[1]
    return kl_total / max(pairs, 1)


def world_model_loss(model: WorldModel, batch: TensorBatch, cfg: TrainConfig,
                     generator: torch.Generator | None = None) -> LossTerms:
    """The negative variational bound (paper Eq. 3) with latent overshooting (Sec. 4) on one batch:
    obs (T, B, S, S, 3) uint8, action (T, B, A) = each frame's previous action, reward (T, B)."""
    steps, batch_size = batch.reward.shape
    device = batch.reward.device
    obs = preprocess_obs(batch.obs, cfg.bit_depth, generator)  # (T, B, S, S, 3)
    z = model.cfg.state_size
    noise = torch.randn((steps, batch_size, z), generator=generator, device=device)
    observed = model.rssm.observe(model.encode(obs), batch.action, model.rssm.initial(batch_size, device), noise)

    features = model.features(LatentState(observed.beliefs, observed.states))  # (T, B, H+Z)
    recon = model.decode(features).float()
    recon_loss = (recon - obs).square().sum(dim=(-3, -2, -1)).mean()
    reward_loss = (model.reward(features).float() - batch.reward).square().mean()
    kl = kl_divergence(observed.posterior, observed.prior).clamp(min=cfg.free_nats).mean()

    if cfg.overshoot_beta > 0 and cfg.overshoot_depth > 0 and steps > 1:
        os_noise = torch.randn((cfg.overshoot_depth, steps - 1, batch_size, z), generator=generator, device=device)
        overshoot = overshooting(model, observed, batch.action, cfg.overshoot_depth, os_noise)
    else:
        overshoot = torch.zeros((), device=device)
    total = recon_loss + cfg.reward_scale * reward_loss + cfg.kl_beta * kl + cfg.overshoot_beta * overshoot
    return LossTerms(total, recon_loss, reward_loss, kl, overshoot)


class StepResult(NamedTuple):
    loss: LossTerms  # detached
    grad_norm: Tensor


def train_step(model: WorldModel, optimizer: torch.optim.Optimizer, batch: TensorBatch, cfg: TrainConfig,
               generator: torch.Generator | None = None,
               autocast: AbstractContextManager | None = None) -> StepResult:
    """One Adam step, the forward pass inside `autocast` (`Runtime.autocast()`; none: fp32). Returns
    device tensors (no host sync): the caller decides when to read them."""
    with autocast or nullcontext():
        terms = world_model_loss(model, batch, cfg, generator)
    optimizer.zero_grad(set_to_none=True)
    terms.total.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    return StepResult(LossTerms(*(t.detach() for t in terms)), grad_norm.detach())


def make_optimizer(model: WorldModel, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over every model parameter (the seed's optimiser; the paper uses Adam)."""
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
