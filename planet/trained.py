"""Trained models as artifacts: rebuild one from its file alone, and act with it.

A checkpoint or `models/model.pt` carries the resolved config it was trained with and the env's
action bounds (`planet.checkpoint`), so no params file is needed:

    model, cfg = planet.load_model("models/model.pt")
    agent = planet.load_agent("models/model.pt")
    agent.reset()
    action = agent.act(frame)  # frame: (H, W, 3) uint8 as the env renders it -> action in env units
    # one act per cfg.env.action_repeat env steps: hold the action that long, as training did
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from planet.agent import Agent
from planet.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from planet.config import Config, ConfigError, load_config
from planet.envs import center_crop, resize_frame, to_env_units
from planet.model import WorldModel
from planet.planner import Planner
from planet.runtime import Runtime, resolve_device

# What a model file must agree on with a config that uses it: the network, and the frames it sees.
FITTING_KEYS = ("model.", "env.id", "env.image_size", "env.crop")


def saved_config(ckpt: Checkpoint, path: Path) -> Config:
    """The Config a model file was trained with; refused in one line naming the file if unreadable."""
    try:
        return load_config(ckpt.config)
    except ConfigError as err:
        raise CheckpointError(f"{path}: its recorded config is not valid here ({err})") from None


def config_mismatch(trained: Config, cfg: Config) -> list[str]:
    """`key: trained value -> cfg value` for each key that must agree between a model and a config."""
    saved, wanted = trained.flat(), cfg.flat()
    return [f"{key}: {saved[key]!r} -> {wanted[key]!r}" for key in saved
            if key.startswith(FITTING_KEYS) and saved[key] != wanted[key]]


def build_model(ckpt: Checkpoint, cfg: Config, path: Path, device: torch.device) -> WorldModel:
    """The network of `cfg` with the checkpoint's weights, in eval mode; one line if they do not fit."""
    mismatch = config_mismatch(saved_config(ckpt, path), cfg)
    if mismatch:
        raise CheckpointError(f"{path}: trained under other settings than these ({'; '.join(mismatch)})")
    model = WorldModel(cfg.model, ckpt.action_size, cfg.env.image_size).to(device)
    model.load_state_dict(ckpt.model)
    return model.eval()


def _load(path: Path, device: str) -> tuple[Checkpoint, WorldModel, Config]:
    ckpt = load_checkpoint(path, map_location=resolve_device(device))
    cfg = saved_config(ckpt, path)
    return ckpt, build_model(ckpt, cfg, path, resolve_device(device)), cfg


def load_model(path: str | Path, device: str = "cpu") -> tuple[WorldModel, Config]:
    """A checkpoint or model file -> (the world model in eval mode, the config it was trained with)."""
    _, model, cfg = _load(Path(path), device)
    return model, cfg


class PlanetAgent:
    """A trained model and the CEM planner, acting on raw frames, in the env's own action units.

    Each `act` crops and resizes the frame as training did, filters it into the belief together with
    the previous action, plans, and returns the first action of the plan (no exploration noise)."""

    def __init__(self, model: WorldModel, cfg: Config, action_low: np.ndarray, action_high: np.ndarray,
                 seed: int = 0):
        device = next(model.parameters()).device
        self.cfg = cfg
        self.low, self.high = action_low.astype(np.float32), action_high.astype(np.float32)
        # The precision it was trained in, eager (an agent acts once per frame, too few plans to compile
        # for), on the model's device; the process's thread count stays the caller's.
        runtime = Runtime.resolve(dataclasses.replace(cfg.runtime, device=device.type, compile=False, threads=0))
        planner = Planner(model, cfg.evaluation_planner(), runtime)
        self.agent = Agent(model, planner, torch.Generator(device).manual_seed(seed), cfg.train.bit_depth)
        self.reset()

    def reset(self) -> None:
        """Start a new episode: initial belief, zero previous action."""
        self.agent.reset(1)

    def act(self, frame: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 frame -> (A,) action within the env's bounds, for cfg.env.action_repeat env steps."""
        if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 frame, got {frame.dtype} {frame.shape}")
        obs = resize_frame(center_crop(frame, self.cfg.env.crop), self.cfg.env.image_size)  # (S, S, 3)
        self.agent.observe(obs[None])
        return to_env_units(self.agent.act()[0], self.low, self.high)  # (A,) in [-1, 1] -> env units


def load_agent(path: str | Path, device: str = "cpu", seed: int = 0) -> PlanetAgent:
    """A checkpoint or model file -> an agent with `reset()` and `act(frame)`."""
    ckpt, model, cfg = _load(Path(path), device)
    return PlanetAgent(model, cfg, np.array(ckpt.action_low), np.array(ckpt.action_high), seed)
