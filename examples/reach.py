"""An example of your own environment for PlaNet: a dot steered to a target on a wide 48x64 frame.

Importing this module registers `Reach-v0`; name it in params.yaml as `examples.reach:Reach-v0`
(docs/own-env.md walks through it). It has what an env of your own may have and PlaNet takes:
a non-square frame, asymmetric action bounds, episodes that end early (on reaching the target),
float64 observations (the agent ignores them: it sees pixels).
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

HEIGHT, WIDTH = 48, 64


TARGET = np.array([0.75, 0.7])  # (x, y) in [0, 1]^2, y downwards


class ReachEnv(gym.Env):
    """The red dot starts at random in the upper left and moves by (dx, dy) = 0.1 * action per step
    towards the green target, always in the same place. Reward: minus the distance to the target,
    so the sooner there the better; reaching it (closer than 0.08) ends the episode. Random actions
    wander; a planner heads straight there."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, render_mode: str | None = None):
        self.render_mode = render_mode
        # Asymmetric bounds in x: stronger to the right than back to the left.
        self.action_space = gym.spaces.Box(np.array([-0.5, -1.0], np.float32), np.array([1.0, 1.0], np.float32))
        self.observation_space = gym.spaces.Box(0.0, 1.0, (4,), np.float64)
        self.pos = np.zeros(2)
        self.target = np.zeros(2)

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.pos, self.target])  # (4,) float64

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(0.1, 0.4, size=2)
        self.target = TARGET.copy()
        return self._obs(), {}

    def step(self, action):
        self.pos = np.clip(self.pos + 0.1 * np.asarray(action, np.float64), 0.0, 1.0)
        distance = float(np.linalg.norm(self.pos - self.target))
        reached = distance < 0.08
        return self._obs(), -distance, reached, False, {}

    def render(self):
        rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
        frame = np.full((HEIGHT, WIDTH, 3), 30, np.uint8)
        for (x, y), colour, radius in ((self.target, (40, 200, 60), 5), (self.pos, (230, 50, 40), 4)):
            near = (cols - x * (WIDTH - 1)) ** 2 + (rows - y * (HEIGHT - 1)) ** 2 <= radius**2
            frame[near] = colour
        return frame


if "Reach-v0" not in gym.registry:
    gym.register("Reach-v0", entry_point=ReachEnv, max_episode_steps=60)


def baseline_returns(policy: str, episodes: int = 50, action_repeat: int = 2) -> np.ndarray:
    """Returns of `random` actions, or of steering `straight` at the target, over `episodes` seeds."""
    env, rng, returns = gym.make("Reach-v0"), np.random.default_rng(0), []
    low, high = env.action_space.low.astype(np.float64), env.action_space.high.astype(np.float64)
    for seed in range(episodes):
        env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            if policy == "random":
                action = rng.uniform(low, high)
            else:  # the largest step along the line to the target, slowing down for the last one
                to_target = env.unwrapped.target - env.unwrapped.pos
                along = to_target / max(np.abs(to_target).max(), 1e-9)
                action = np.clip(along, low, high) * min(1.0, np.linalg.norm(to_target) / 0.2)
            for _ in range(action_repeat):
                _, reward, terminated, truncated, _ = env.step(action)
                total, done = total + reward, terminated or truncated
                if done:
                    break
        returns.append(total)
    return np.array(returns)


if __name__ == "__main__":  # python -m examples.reach: what a planner is measured against
    for name in ("random", "straight"):
        found = baseline_returns(name)
        print(f"{name}: {found.mean():.1f} +- {found.std():.1f} over {len(found)} episodes at action repeat 2")
