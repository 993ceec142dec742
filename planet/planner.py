"""Cross-Entropy Method planning in latent space (paper Sec. 2, "Planning algorithm", and Alg. 2),
batched over environments.

For E beliefs at once: sample N action sequences of length T per belief from N(mean, std), clip to
[-1, 1], roll them out with the prior, score each by its summed predicted reward, refit mean and std
to the top K, repeat I times, and return the first action of the final mean. The mean starts at zero
(the paper) or, with warm start, at the previous plan shifted by one step (`shift_plan`). Rollouts
sample the prior's stochastic state, one sample per candidate and step (the paper).

All randomness is drawn up front from an explicit generator and handed in as tensors, so
`refine` is a pure function of tensors: it compiles with `torch.compile(fullgraph=True)` (which is
what lets CUDA graphs capture it) and runs with no host-device sync.

`imagine_reward` is the plain rollout step. `Planner.rollout` is the one place a faster variant of it
is chosen, as the planner's `planet.runtime.Runtime` says: on a CPU in bf16, the same step on weights
packed for oneDNN once per plan (`planet.packed`); elsewhere, with `compile`, the step compiled into
one graph (seconds to compile, where the unrolled loop takes minutes on a CPU). Tests hold each
variant to the plain step.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor

from planet.config import PlannerConfig
from planet.model import LatentState, WorldModel
from planet.packed import pack_rollout, packed_imagine_reward
from planet.runtime import PLAIN, Runtime


def sample_candidates(mean: Tensor, std: Tensor, noise: Tensor) -> Tensor:
    """mean, std (T, E, 1, A); noise (T, E, N, A) -> clipped candidates (T, E, N, A)."""
    return (mean + std * noise).clamp(-1.0, 1.0)


def imagine_reward(model: WorldModel, latent: LatentState, action: Tensor, noise: Tensor) -> tuple[LatentState, Tensor]:
    """One open-loop prior step and the reward predicted there: latent (M, .), action (M, A) -> latent', (M,)."""
    latent, _ = model.rssm.imagine_step(latent, action, noise)
    return latent, model.reward(model.features(latent)).float()


Step = Callable[[Any, LatentState, Tensor, Tensor], tuple[LatentState, Tensor]]
"""step(model, latent, action, noise) -> latent', reward; `model` is whatever the step rolls with."""


def score_candidates(model: Any, latent: LatentState, actions: Tensor, state_noise: Tensor,
                     step: Step = imagine_reward) -> Tensor:
    """Predicted return of each sequence. latent (E*N, .), actions (T, E, N, A) -> (E, N)."""
    horizon, envs, n, _ = actions.shape
    flat_actions = actions.flatten(1, 2)  # (T, E*N, A)
    returns = torch.zeros(envs * n, device=actions.device)
    for t in range(horizon):
        # Reward step by step, not batched over T: (E*N, .) tensors stay in cache, which beats a
        # bigger matmul on CPU, and the sum needs no stacked (T, E*N, H+Z) copy.
        latent, reward = step(model, latent, flat_actions[t], state_noise[t])
        returns += reward
    return returns.view(envs, n)


def refit(actions: Tensor, returns: Tensor, top_k: int) -> tuple[Tensor, Tensor]:
    """actions (T, E, N, A), returns (E, N) -> mean, std (T, E, 1, A) of the top_k elites."""
    elite_index = returns.topk(top_k, dim=1).indices  # (E, K)
    index = elite_index[None, :, :, None].expand(actions.shape[0], -1, -1, actions.shape[-1])
    elite_actions = actions.gather(2, index)  # (T, E, K, A)
    return elite_actions.mean(2, keepdim=True), elite_actions.std(2, keepdim=True).clamp(min=1e-4)


def refine(model: Any, latent: LatentState, action_noise: Tensor, state_noise: Tensor,
           top_k: int, init_mean: Tensor, step: Step = imagine_reward) -> Tensor:
    """The CEM loop. latent (E, .); action_noise (I, T, E, N, A); state_noise (I, T, E*N, Z);
    init_mean (T, E, A), where the search starts; `step` rolls the candidates forward.

    Returns the refit mean (T, E, A)."""
    iterations, horizon, envs, n, action_size = action_noise.shape
    mean = init_mean.unsqueeze(2)  # (T, E, 1, A)
    std = torch.ones_like(mean)
    expanded = LatentState(latent.belief.repeat_interleave(n, 0), latent.state.repeat_interleave(n, 0))  # (E*N, .)
    for i in range(iterations):
        actions = sample_candidates(mean, std, action_noise[i])
        returns = score_candidates(model, expanded, actions, state_noise[i], step)
        mean, std = refit(actions, returns, top_k)
    return mean.squeeze(2)


class Planner:
    """CEM over a world model, on `runtime` (default: CPU, fp32, eager): bf16 autocast, the rollout step
    compiled on the first plan, or on a CPU in bf16 rolled out on packed weights, as it says. `step`:
    what scores a candidate step (default: the world model's prior and reward head); with another step
    the model needs only `action_size` and `cfg.state_size`, and no fast path is taken."""

    def __init__(self, model: WorldModel, cfg: PlannerConfig, runtime: Runtime = PLAIN,
                 step: Step = imagine_reward):
        self.model = model
        self.cfg = cfg
        self.runtime = runtime
        plain = step is imagine_reward
        self.packs = plain and runtime.packs_rollout()
        self.step = torch.compile(step, fullgraph=True, dynamic=False) if runtime.compile and plain else step

    def rollout(self, rows: int) -> tuple[Any, Step]:
        """The seam: what rolls `rows` candidates forward, as (model-like, step)."""
        if self.packs:
            return pack_rollout(self.model, rows), packed_imagine_reward
        return self.model, self.step

    def plan(self, latent: LatentState, generator: torch.Generator | None = None) -> Tensor:
        """latent (E, .) -> first action of the refit mean (E, A), in [-1, 1]."""
        return self.plan_sequence(latent, generator)[0]

    def plan_sequence(self, latent: LatentState, generator: torch.Generator | None = None,
                      init_mean: Tensor | None = None) -> Tensor:
        """latent (E, .), init_mean (T, E, A) or None (zeros) -> the whole refit mean (T, E, A)."""
        cfg, model = self.cfg, self.model
        envs, device = latent.belief.shape[0], latent.belief.device
        if self.runtime.bf16 and device.type != self.runtime.device.type:  # its autocast would not apply
            raise ValueError(f"the planner's bf16 runtime is on {self.runtime.device.type}, "
                             f"the belief on {device.type}")
        if init_mean is None:
            init_mean = torch.zeros(cfg.horizon, envs, model.action_size, device=device)
        action_noise = torch.randn((cfg.iterations, cfg.horizon, envs, cfg.candidates, model.action_size),
                                   generator=generator, device=device)
        state_noise = torch.randn((cfg.iterations, cfg.horizon, envs * cfg.candidates, model.cfg.state_size),
                                  generator=generator, device=device)
        if self.runtime.bf16:
            # The steps' latents come out in bf16; starting in bf16 too keeps one set of dtypes, so a
            # compiled step compiles once, not twice. Lossless: autocast casts it there anyway.
            latent = LatentState(latent.belief.bfloat16(), latent.state.bfloat16())
        rollout_model, step = self.rollout(envs * cfg.candidates)  # packing copies detached weights
        # Packed weights are bf16 already: no autocast around them.
        with torch.no_grad(), nullcontext() if self.packs else self.runtime.autocast():
            mean = refine(rollout_model, latent, action_noise, state_noise, cfg.top_k, init_mean, step)
        return mean.float()  # (T, E, A)


def shift_plan(mean: Tensor) -> Tensor:
    """(T, E, A) -> the same plan one step later: drop the executed first action, append zeros."""
    return torch.cat([mean[1:], torch.zeros_like(mean[:1])])
