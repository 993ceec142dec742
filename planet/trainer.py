"""One PlaNet training iteration (paper Alg. 1): gradient steps on replay, then collection.

`Trainer` owns the model, optimizer, planner and the run's two generators (torch for model noise,
numpy for replay sampling), and turns all of it, with the loop's `TrainProgress`, into a
`Checkpoint` and back. The stage owns the outer loop, the files and the logging.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch

from planet.agent import Agent, run_episodes
from planet.checkpoint import Checkpoint, TrainProgress, capture_rng, restore_rng
from planet.config import Config
from planet.envs import PixelEnv
from planet.loss import LOSS_NAMES, TensorBatch, make_optimizer, train_step
from planet.model import WorldModel
from planet.planner import Planner
from planet.replay import Episode, SequenceSampler
from planet.runtime import Runtime


class NonFiniteError(RuntimeError):
    """Training produced a NaN or infinity; the message names the iteration and the term."""


class Trainer:
    """Trains on `runtime` (its device, precision and planning); checkpoints record the precision it
    computes in. `action_low`/`action_high` (A,) are the env's bounds, kept in checkpoints so a model
    file can act in env units (default: [-1, 1])."""

    def __init__(self, cfg: Config, action_size: int, runtime: Runtime,
                 action_low: list[float] | None = None, action_high: list[float] | None = None):
        self.cfg = runtime.applied_to(cfg)
        self.runtime = runtime
        device = self.device = runtime.device
        self.action_low = [float(v) for v in action_low] if action_low is not None else [-1.0] * action_size
        self.action_high = [float(v) for v in action_high] if action_high is not None else [1.0] * action_size
        self.model = WorldModel(cfg.model, action_size, cfg.env.image_size).to(device)
        self.optimizer = make_optimizer(self.model, cfg.train)
        self.planner = Planner(self.model, cfg.planner, runtime)
        self.generator = torch.Generator(device).manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)

    def to_batch(self, sampler: SequenceSampler) -> TensorBatch:
        """One replay batch of `train.batch_size` sequences, on the trainer's device."""
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
                                self.generator, self.runtime.autocast())
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
        """An agent that plans with the model being trained and draws from the run's generator."""
        return Agent(self.model, self.planner, self.generator, self.cfg.train.bit_depth)

    def collect(self, envs: list[PixelEnv], seeds: list[int],
                progress: Callable[[], None] | None = None) -> list[Episode]:
        """One episode per env with the planner and `train.exploration_noise` (paper Alg. 1)."""
        self.model.eval()
        return run_episodes(envs, seeds, self.make_agent(), self.cfg.train.exploration_noise, progress=progress)

    def checkpoint(self, fingerprint: str, progress: TrainProgress, weights_only: bool = False) -> Checkpoint:
        """Everything needed to resume after `progress.iteration` iterations, with the resolved config;
        `weights_only`: the model file (no optimizer or RNG state)."""
        return Checkpoint(
            iteration=progress.iteration, fingerprint=fingerprint, config=dataclasses.asdict(self.cfg),
            action_low=self.action_low, action_high=self.action_high, model=self.model.state_dict(),
            optimizer={} if weights_only else self.optimizer.state_dict(),
            rng={} if weights_only else capture_rng(self.generator, self.rng),
            progress=dataclasses.replace(progress, rows=list(progress.rows), timing=list(progress.timing)))

    def restore(self, ckpt: Checkpoint) -> None:
        """Continue exactly where `ckpt` stopped: weights, optimizer moments and every RNG."""
        self.model.load_state_dict(ckpt.model)
        self.optimizer.load_state_dict(ckpt.optimizer)
        restore_rng(ckpt.rng, self.generator, self.rng)
