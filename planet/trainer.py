"""One PlaNet training iteration (paper Alg. 1): gradient steps on replay, then collection.

`Trainer` owns the model, optimizer, planner and the run's two generators (torch for model noise,
numpy for replay sampling), and turns all of it into a `Checkpoint` and back. The stage owns the
outer loop, the files and the logging.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from planet.agent import Agent, run_episodes
from planet.checkpoint import Checkpoint, capture_rng, restore_rng
from planet.config import Config
from planet.envs import PixelEnv
from planet.loss import LOSS_NAMES, TensorBatch, make_optimizer, train_step
from planet.model import WorldModel
from planet.planner import Planner
from planet.replay import Episode, SequenceSampler


class NonFiniteError(RuntimeError):
    """Training produced a NaN or infinity; the message names the iteration and the term."""


class Trainer:
    def __init__(self, cfg: Config, action_size: int, device: torch.device):
        self.cfg = cfg
        self.device = device
        self.model = WorldModel(cfg.model, action_size, cfg.env.image_size).to(device)
        self.optimizer = make_optimizer(self.model, cfg.train)
        self.planner = Planner(self.model, cfg.planner, cfg.runtime.precision, cfg.runtime.compile)
        self.generator = torch.Generator(device).manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)

    def to_batch(self, sampler: SequenceSampler) -> TensorBatch:
        batch = sampler.sample(self.cfg.train.batch_size)
        return TensorBatch(*(torch.as_tensor(a).to(self.device, non_blocking=True) for a in batch))

    def train_iteration(self, sampler: SequenceSampler, iteration: int,
                        on_step: Callable[[], None] | None = None) -> dict[str, float]:
        """`steps_per_iteration` gradient steps; returns the mean of each loss term and grad norm.

        Terms stay on the device until the end (one host sync per iteration, not per step)."""
        self.model.train()
        history = []
        for _ in range(self.cfg.train.steps_per_iteration):
            result = train_step(self.model, self.optimizer, self.to_batch(sampler), self.cfg.train,
                                self.generator, self.cfg.runtime.precision)
            history.append(torch.stack([*result.loss, result.grad_norm]))
            if on_step is not None:
                on_step()
        values = torch.stack(history).float().cpu().numpy()  # (steps, terms + 1)
        names = [*LOSS_NAMES, "grad_norm"]
        bad = ~np.isfinite(values)
        if bad.any():
            step = int(np.argwhere(bad)[0, 0])
            # Name the term that went bad, not the total it spoils.
            term = next(i for i in [*range(1, len(names)), 0] if bad[step, i])
            raise NonFiniteError(f"iteration {iteration + 1}: {names[term]} became {values[step, term]} at "
                                 f"gradient step {step + 1}; no checkpoint was written for it")
        return {name: float(v) for name, v in zip(names, values.mean(0))}

    def make_agent(self) -> Agent:
        return Agent(self.model, self.planner, self.generator, self.cfg.train.bit_depth)

    def collect(self, envs: list[PixelEnv], seeds: list[int], progress=None) -> list[Episode]:
        self.model.eval()
        return run_episodes(envs, seeds, self.make_agent(), self.cfg.train.exploration_noise, progress=progress)

    def checkpoint(self, iteration: int, fingerprint: str, extra: dict[str, Any]) -> Checkpoint:
        return Checkpoint(iteration, fingerprint, self.model.state_dict(), self.optimizer.state_dict(),
                          capture_rng(self.generator, self.rng), extra)

    def restore(self, ckpt: Checkpoint) -> None:
        self.model.load_state_dict(ckpt.model)
        self.optimizer.load_state_dict(ckpt.optimizer)
        restore_rng(ckpt.rng, self.generator, self.rng)
