"""Pixel environments: any Gymnasium env with a Box action space, seen as small uint8 images.

The planner works in [-1, 1]^A; `PixelEnv.step` maps that affinely onto the env's real bounds
(Pendulum-v1: [-2, 2] N m; the seed clamps to [-1, 1] and so never uses more than half the torque).
"""
from __future__ import annotations

import os
from typing import NamedTuple

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from planet.config import ConfigError, EnvConfig

# pygame (Gymnasium's classic-control renderer) initialises SDL; with no display or sound server it
# prints "XDG_RUNTIME_DIR is invalid". Dummy drivers render off-screen without the noise.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
# SDL also catches SIGTERM (and SIGINT, where Python does not) and turns it into a quit event nobody
# reads, so `kill` or a batch scheduler could not stop a run. Leave signals to Python.
os.environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")


class StepResult(NamedTuple):
    obs: np.ndarray  # (S, S, 3) uint8
    reward: float  # summed over the repeated actions
    terminated: bool
    truncated: bool


def resize_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8 with antialiased (area-like) bilinear filtering."""
    if frame.shape[0] == size and frame.shape[1] == size:
        return np.ascontiguousarray(frame)
    image = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float()  # (1, 3, H, W)
    small = F.interpolate(image, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return small[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()  # (S, S, 3)


def center_crop(frame: np.ndarray, fraction: float) -> np.ndarray:
    """Keep the central `fraction` of height and width: a tighter camera on a small object."""
    if fraction >= 1.0:
        return frame
    height, width = frame.shape[:2]
    keep_h, keep_w = max(1, round(height * fraction)), max(1, round(width * fraction))
    top, left = (height - keep_h) // 2, (width - keep_w) // 2
    return frame[top : top + keep_h, left : left + keep_w]


def episode_seed(base_seed: int, index: int, stream: int = 0) -> int:
    """A distinct, fixed env seed per (run seed, stream, episode index); stream 1 is evaluation."""
    return int(np.random.SeedSequence([base_seed, stream, index]).generate_state(1)[0])


class PixelEnv:
    """Gymnasium env -> (S, S, 3) uint8 frames, action repeat, actions in [-1, 1]."""

    def __init__(self, cfg: EnvConfig):
        self.cfg = cfg
        try:
            self.env = gym.make(cfg.id, render_mode="rgb_array")
        except gym.error.Error as err:
            raise ConfigError(f"env.id: cannot make {cfg.id!r}: {err}") from None
        space = self.env.action_space
        if not isinstance(space, gym.spaces.Box):
            self.env.close()
            raise ConfigError(f"env.id: {cfg.id} has a {type(space).__name__} action space; "
                              "PlaNet needs a continuous Box action space")
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            self.env.close()
            raise ConfigError(f"env.id: {cfg.id} has unbounded actions; cannot map [-1, 1] onto them")
        self.low = space.low.astype(np.float32)
        self.high = space.high.astype(np.float32)
        self.action_size = int(np.prod(space.shape))

    @property
    def max_steps(self) -> int | None:
        """Agent steps per episode (env steps / action repeat, rounded up), if the env has a limit."""
        limit = self.env.spec.max_episode_steps if self.env.spec else None
        return None if limit is None else -(-limit // self.cfg.action_repeat)

    def to_env_action(self, action: np.ndarray) -> np.ndarray:
        """[-1, 1] -> [low, high], affinely; out-of-range inputs are clipped first."""
        unit = np.clip(np.asarray(action, dtype=np.float32).reshape(self.low.shape), -1.0, 1.0)
        return self.low + (unit + 1.0) * 0.5 * (self.high - self.low)

    def render(self) -> np.ndarray:
        return resize_frame(center_crop(self.env.render(), self.cfg.crop), self.cfg.image_size)

    def reset(self, seed: int) -> np.ndarray:
        self.env.reset(seed=seed)
        self.env.action_space.seed(seed)
        return self.render()

    def step(self, action: np.ndarray) -> StepResult:
        env_action = self.to_env_action(action)
        total, terminated, truncated = 0.0, False, False
        for _ in range(self.cfg.action_repeat):
            _, reward, terminated, truncated, _ = self.env.step(env_action)
            total += float(reward)
            if terminated or truncated:
                break
        return StepResult(self.render(), total, bool(terminated), bool(truncated))

    def close(self) -> None:
        self.env.close()
