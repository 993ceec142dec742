"""A tiny deterministic Gymnasium env for tests: its frames show a step counter, its reward is the
action just taken, so the replay's time alignment can be checked exactly."""
from __future__ import annotations

import gymnasium as gym
import numpy as np


class CounterEnv(gym.Env):
    """Frame k is filled with value 10*k (mod 250); reward for action a at step k is 10*a[0] + k.

    Actions are Box [-2, 2], so the [-1, 1] -> env rescaling is visible in the reward."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, render_mode: str | None = None, size: int = 24):
        self.render_mode = render_mode
        self.size = size
        self.action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
        self.count = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.count = int(self.np_random.integers(0, 3))  # the seed matters, visibly
        return np.array([self.count], np.float32), {}

    def step(self, action):
        reward = 10.0 * float(action[0]) + self.count
        self.count += 1
        return np.array([self.count], np.float32), reward, False, False, {}

    def render(self):
        return np.full((self.size, self.size, 3), (10 * self.count) % 250, dtype=np.uint8)


class DiscreteEnv(CounterEnv):
    def __init__(self, render_mode: str | None = None):
        super().__init__(render_mode)
        self.action_space = gym.spaces.Discrete(2)


class SquareEnv(gym.Env):
    """A 4x4 white square on a 16x16 frame that the action moves sideways (2 px per unit of action);
    the reward is the square's x position over the frame's width, so the best policy pushes right.

    Learnable from pixels in seconds, and random actions score far below planning on a fair model."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}
    size = 16

    def __init__(self, render_mode: str | None = None):
        self.render_mode = render_mode
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.observation_space = gym.spaces.Box(0.0, float(self.size), (1,), np.float32)
        self.x = 0.0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = float(self.np_random.integers(0, self.size // 2))
        return np.array([self.x], np.float32), {}

    def step(self, action):
        self.x = float(np.clip(self.x + 2.0 * float(action[0]), 0, self.size - 4))
        return np.array([self.x], np.float32), self.x / self.size, False, False, {}

    def render(self):
        frame = np.zeros((self.size, self.size, 3), np.uint8)
        frame[6:10, int(self.x):int(self.x) + 4] = 255
        return frame


def register() -> None:
    if "PlanetCounter-v0" not in gym.registry:
        gym.register("PlanetCounter-v0", entry_point=CounterEnv, max_episode_steps=12)
        gym.register("PlanetDiscrete-v0", entry_point=DiscreteEnv, max_episode_steps=12)
        gym.register("PlanetSquare-v0", entry_point=SquareEnv, max_episode_steps=12)
