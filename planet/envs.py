"""Pixel environments: any Gymnasium env with a Box action space, seen as small uint8 images.

Three families go through the same `PixelEnv`: Gymnasium's classic control (`Pendulum-v1`), the
DeepMind Control Suite through shimmy (`dm_control/cartpole-swingup-v0`, the paper's benchmark,
Sec. 5) and Gymnasium's MuJoCo envs (`HalfCheetah-v5`). MuJoCo-based envs render exactly once per
decision, at `env.image_size`, the suite from camera 0 as the paper does (shimmy's default is a
distant free camera in which the cart is a few pixels), headless through `MUJOCO_GL` (EGL by
default; Mesa's software EGL needs no GPU).

The planner works in [-1, 1]^A; `PixelEnv.step` maps that affinely onto the env's real bounds
(Pendulum-v1: [-2, 2] N m; the seed clamps to [-1, 1] and so never uses more than half the torque).
"""
from __future__ import annotations

import difflib
import importlib
import logging
import math
import os
import warnings
from typing import Any, NamedTuple

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
# MuJoCo picks its OpenGL backend when first imported (lazily, by the env's entry point): headless
# EGL unless the user chose another (`osmesa`, or `glfw` with a display).
os.environ.setdefault("MUJOCO_GL", "egl")

DMC_PREFIX = "dm_control/"
# What provides each backend on Debian, for the error a machine without it gets.
RENDER_PACKAGES = {"egl": "libegl1 libgl1-mesa-dri", "osmesa": "libosmesa6", "glfw": "libglfw3 and a display"}


class RenderError(RuntimeError):
    """No working headless renderer; the message names the backend and the packages that provide it."""


class StepResult(NamedTuple):
    obs: np.ndarray  # (S, S, 3) uint8
    reward: float  # summed over the repeated actions
    terminated: bool
    truncated: bool


def resize_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8 with antialiased (area-like) bilinear filtering.

    Always C-contiguous, the layout an episode file loads in: the layout of a replay batch decides
    which convolution kernel the encoder runs, and kernels round differently, so a frame kept in
    memory and the same frame read back after a resume must not differ in it."""
    if frame.shape[0] == size and frame.shape[1] == size:
        return np.ascontiguousarray(frame)
    image = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float()  # (1, 3, H, W)
    small = F.interpolate(image, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return np.ascontiguousarray(small[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy())  # (S, S, 3)


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


def to_env_units(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """The planner's [-1, 1] action -> the env's [low, high], affinely; out-of-range inputs are clipped first."""
    unit = np.clip(np.asarray(action, dtype=np.float32).reshape(low.shape), -1.0, 1.0)
    return low + (unit + 1.0) * 0.5 * (high - low)


def render_size(cfg: EnvConfig) -> int:
    """Side of the frame to render so that the central `crop` of it is `image_size` pixels."""
    return math.ceil(cfg.image_size / cfg.crop)


def is_mujoco(spec: gym.envs.registration.EnvSpec) -> bool:
    """A DeepMind Control Suite task or a Gymnasium MuJoCo env (renders through MuJoCo's GL backend)."""
    entry = spec.entry_point if isinstance(spec.entry_point, str) else getattr(spec.entry_point, "__module__", "")
    return spec.id.startswith(DMC_PREFIX) or "mujoco" in str(entry)


def make_kwargs(spec: gym.envs.registration.EnvSpec, cfg: EnvConfig) -> dict[str, Any]:
    """gym.make's render arguments: the suite's camera 0 at the frame size, MuJoCo's frame size."""
    size = render_size(cfg)
    if spec.id.startswith(DMC_PREFIX):
        return {"render_kwargs": {"width": size, "height": size, "camera_id": 0}}
    if is_mujoco(spec):
        return {"width": size, "height": size}
    return {}  # classic control draws at its own size; `render` resizes


def _not_the_asset_notice(record: logging.LogRecord) -> bool:
    """dm_control's own cheetah model sets `settotalmass`, which MuJoCo deprecates: the notice came once per
    env made (10 times in an evaluation) and nothing a user sets changes it. Other MuJoCo warnings,
    which dm_control logs to `absl` too, still show."""
    return not record.getMessage().startswith("compiler attribute 'settotalmass' is deprecated")


def _route_mujoco_warnings() -> None:
    """MuJoCo appends warnings to MUJOCO_LOG.TXT in the working directory unless a handler is set."""
    import mujoco

    if mujoco.get_mju_user_warning() is None:
        mujoco.set_mju_user_warning(lambda message: warnings.warn(f"MuJoCo: {message}", RuntimeWarning, 2))


def known_env_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of `env_id`; an unknown id is a one-line ConfigError with a did-you-mean.

    `package.module:EnvId-v0`, as `gym.make` takes it: the module (found on `sys.path`, where a stage
    run from the project root finds the project's own modules) is imported first, to register the id."""
    module, sep, env_id = env_id.rpartition(":")
    if sep:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            raise ConfigError(f"env.id: module {module!r} not found ({err}); it must be importable from the "
                              "project root or installed") from None
        if env_id not in gym.registry:
            raise ConfigError(f"env.id: importing {module} registered no env {env_id!r}; register it there with "
                              "gymnasium.register(id=..., entry_point=...)")
    if env_id.startswith(DMC_PREFIX):
        # shimmy imports dm_control's composer, which sets every DeprecationWarning in the process to
        # "always" (torch's and SQLAlchemy's then print in every stage): keep the filters as they were.
        try:
            with warnings.catch_warnings():
                import shimmy
        except ImportError as err:
            raise ConfigError(f"env.id: {env_id} needs the dm_control packages ({err}); "
                              "pip install -r requirements.txt") from None
        gym.register_envs(shimmy)
        logging.getLogger("absl").addFilter(_not_the_asset_notice)  # once: addFilter skips one it has
    if env_id in gym.registry:
        return gym.registry[env_id]
    close = difflib.get_close_matches(env_id, list(gym.registry), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(f"env.id: {env_id!r} is not a registered Gymnasium env{hint}")


class PixelEnv:
    """Gymnasium env -> (S, S, 3) uint8 frames, action repeat, actions in [-1, 1]."""

    def __init__(self, cfg: EnvConfig):
        self.cfg = cfg
        spec = known_env_spec(cfg.id)
        if is_mujoco(spec):
            _route_mujoco_warnings()
        try:
            self.env = gym.make(cfg.id, render_mode="rgb_array", **make_kwargs(spec, cfg))
        except gym.error.Error as err:
            raise ConfigError(f"env.id: cannot make {cfg.id!r}: {err}") from None
        self.mujoco = is_mujoco(spec)
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
        limit = self.env_step_limit
        return None if limit is None else -(-limit // self.cfg.action_repeat)

    @property
    def env_step_limit(self) -> int | None:
        """Env steps per episode, if limited: Gymnasium's TimeLimit, or the suite's own (1,000)."""
        if self.env.spec and self.env.spec.max_episode_steps:
            return self.env.spec.max_episode_steps
        suite_env = getattr(self.env.unwrapped, "_env", None)  # shimmy's wrapped dm_control Environment
        limit = getattr(suite_env, "_step_limit", None)
        return int(limit) if limit is not None and math.isfinite(limit) else None

    def to_env_action(self, action: np.ndarray) -> np.ndarray:
        """[-1, 1] -> [low, high], affinely; out-of-range inputs are clipped first."""
        return to_env_units(action, self.low, self.high)

    def render(self) -> np.ndarray:
        try:
            frame = self.env.render()
        except Exception as err:  # each GL backend fails its own way (FatalError, ImportError, ...)
            if not self.mujoco:
                raise
            backend = os.environ.get("MUJOCO_GL", "egl")
            first_line = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
            raise RenderError(f"MuJoCo cannot render with MUJOCO_GL={backend} ({first_line}); install Debian's "
                              f"{RENDER_PACKAGES.get(backend, RENDER_PACKAGES['egl'])}, or try "
                              "MUJOCO_GL=osmesa with libosmesa6; set it before mujoco, dm_control or shimmy "
                              "is first imported") from None
        return resize_frame(center_crop(frame, self.cfg.crop), self.cfg.image_size)

    def reset(self, seed: int) -> np.ndarray:
        """Start an episode with env seed `seed` -> its first frame (S, S, 3) uint8."""
        self.env.reset(seed=seed)
        self.env.action_space.seed(seed)
        return self.render()

    def step(self, action: np.ndarray) -> StepResult:
        """action (A,) in [-1, 1], repeated `action_repeat` times -> the last frame and the summed reward."""
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


def episode_steps(cfg: EnvConfig) -> int | None:
    """Agent steps in one episode of `cfg.id` at its action repeat, if episodes have a limit."""
    env = PixelEnv(cfg)
    try:
        return env.max_steps
    finally:
        env.close()
