"""Episode store (one compressed .npz per episode) and the sequence sampler: the data set D of
paper Alg. 1, from which training draws sequence chunks uniformly.

Time alignment, the one place it is defined. An episode of T agent steps holds

    obs:      o_0  o_1  o_2  ...  o_T        (T+1, S, S, 3) uint8, o_0 is the reset frame
    action:   a_0  a_1  ...  a_{T-1}         (T, A) float32 in [-1, 1], a_t is chosen seeing o_t
    reward:   r_0  r_1  ...  r_{T-1}         (T,)  float32, r_t is paid for taking a_t at o_t
    terminal, truncated:                     (T,)  bool, set on the step that ended the episode

A training sequence of length L starting at i pairs each frame with the action that *led to it*
and the reward paid on the way in:

    obs[t]    = o_{i+1+t}
    action[t] = a_{i+t}      (the previous action of obs[t]: h_t = f(h_{t-1}, s_{t-1}, action[t]))
    reward[t] = r_{i+t}      (predicted from (h_t, s_t), which has seen action[t])

so the reward head never has to guess an action it has not been shown. (The seed feeds a_{t-1}
when filtering but a_{t+d} when overshooting, an off-by-one this layout removes.)
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from planet.fileio import atomic_write

EPISODE_GLOB = "episode_*.npz"


class EpisodeError(ValueError):
    """An episode file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class Episode:
    obs: np.ndarray  # (T+1, S, S, 3) uint8
    action: np.ndarray  # (T, A) float32
    reward: np.ndarray  # (T,) float32
    terminal: np.ndarray  # (T,) bool
    truncated: np.ndarray  # (T,) bool

    def __post_init__(self) -> None:
        problem = _shape_problem(self)
        if problem:
            raise EpisodeError(problem)

    def __len__(self) -> int:
        return len(self.action)

    @property
    def total_reward(self) -> float:
        return float(self.reward.sum())


_DTYPES = {"obs": np.uint8, "action": np.float32, "reward": np.float32, "terminal": np.bool_,
           "truncated": np.bool_}


def _shape_problem(ep: Episode) -> str | None:
    for name, dtype in _DTYPES.items():
        if getattr(ep, name).dtype != dtype:
            return f"{name} has dtype {getattr(ep, name).dtype}, expected {np.dtype(dtype)}"
    steps = len(ep.action)
    if ep.obs.ndim != 4 or ep.obs.shape[-1] != 3 or ep.obs.shape[1] != ep.obs.shape[2]:
        return f"obs has shape {ep.obs.shape}, expected (T+1, S, S, 3)"
    if ep.action.ndim != 2 or steps < 1:
        return f"action has shape {ep.action.shape}, expected (T, A) with T >= 1"
    if len(ep.obs) != steps + 1:
        return f"obs has {len(ep.obs)} frames for {steps} actions, expected {steps + 1}"
    for name in ("reward", "terminal", "truncated"):
        if getattr(ep, name).shape != (steps,):
            return f"{name} has shape {getattr(ep, name).shape}, expected ({steps},)"
    return None


def save_episode(path: Path, episode: Episode) -> None:
    """Write atomically (see `planet.fileio`): a reader never sees half an episode."""
    with atomic_write(path) as f:
        np.savez_compressed(f, **{name: getattr(episode, name) for name in _DTYPES})


def load_episode(path: Path) -> Episode:
    """Load and validate one episode; never unpickles (allow_pickle=False)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = set(_DTYPES) - set(data.files)
            if missing:
                raise EpisodeError(f"{path}: not an episode file (missing {', '.join(sorted(missing))})")
            arrays = {name: data[name] for name in _DTYPES}
        return Episode(**arrays)
    except EpisodeError as err:
        msg = str(err)
        raise EpisodeError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise EpisodeError(f"{path}: corrupt or truncated episode file ({err})") from None


def episode_paths(folder: Path) -> list[Path]:
    """The folder's episode files in the order they were written."""
    return sorted(Path(folder).glob(EPISODE_GLOB))


def episode_path(folder: Path, index: int) -> Path:
    """Where episode number `index` (from 0) is stored."""
    return Path(folder) / f"episode_{index:06d}.npz"


def load_episodes(folder: Path) -> list[Episode]:
    """Every episode in `folder`, validated; the first bad file raises EpisodeError naming it."""
    return [load_episode(p) for p in episode_paths(folder)]


class Batch(NamedTuple):
    obs: np.ndarray  # (L, B, S, S, 3) uint8
    action: np.ndarray  # (L, B, A) float32
    reward: np.ndarray  # (L, B) float32


class SequenceSampler:
    """Uniform over every window of `seq_len` steps that lies inside one episode."""

    def __init__(self, episodes: list[Episode], seq_len: int, rng: np.random.Generator):
        self.episodes = [ep for ep in episodes if len(ep) >= seq_len]
        if not self.episodes:
            longest = max((len(ep) for ep in episodes), default=0)
            raise EpisodeError(f"no episode has train.seq_len={seq_len} steps (longest: {longest})")
        self.seq_len = seq_len
        self.rng = rng
        self._windows = np.array([len(ep) - seq_len + 1 for ep in self.episodes])

    def add(self, episode: Episode) -> None:
        """Make a newly collected episode's windows available (too-short episodes are skipped)."""
        if len(episode) >= self.seq_len:
            self.episodes.append(episode)
            self._windows = np.append(self._windows, len(episode) - self.seq_len + 1)

    def sample(self, batch_size: int) -> Batch:
        """`batch_size` windows drawn uniformly with replacement -> time-major (L, B, ...) arrays."""
        # One draw over all windows: an episode is picked in proportion to how many windows it has.
        flat = self.rng.integers(self._windows.sum(), size=batch_size)  # in [0, number of windows)
        ends = np.cumsum(self._windows)
        which = np.searchsorted(ends, flat, side="right")
        starts = flat - (ends[which] - self._windows[which])
        span = np.arange(self.seq_len)
        obs, action, reward = [], [], []
        for ep_index, start in zip(which, starts):
            ep = self.episodes[ep_index]
            steps = start + span
            obs.append(ep.obs[steps + 1])
            action.append(ep.action[steps])
            reward.append(ep.reward[steps])
        return Batch(np.stack(obs, 1), np.stack(action, 1), np.stack(reward, 1))  # time-major
