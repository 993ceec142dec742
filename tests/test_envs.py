import signal
import subprocess
import sys

import numpy as np
import pytest

from planet.config import ConfigError, EnvConfig
from planet.envs import PixelEnv, center_crop, episode_seed, resize_frame


def test_actions_map_onto_the_env_bounds():
    env = PixelEnv(EnvConfig(id="Pendulum-v1", image_size=64))
    assert np.allclose(env.to_env_action(np.array([-1.0])), [-2.0])
    assert np.allclose(env.to_env_action(np.array([1.0])), [2.0])  # full torque, unlike the seed
    assert np.allclose(env.to_env_action(np.array([0.25])), [0.5])
    assert np.allclose(env.to_env_action(np.array([7.0])), [2.0])  # clipped first
    env.close()


def test_pendulum_frames_are_small_uint8_and_seeded():
    env = PixelEnv(EnvConfig(id="Pendulum-v1", image_size=32, action_repeat=2))
    first = env.reset(seed=3)
    assert first.shape == (32, 32, 3) and first.dtype == np.uint8
    again = env.reset(seed=3)
    other = env.reset(seed=4)
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert env.max_steps == 100  # 200 env steps, action repeat 2
    env.close()


def test_action_repeat_sums_rewards_and_stops_at_the_limit():
    env = PixelEnv(EnvConfig(id="PlanetCounter-v0", image_size=16, action_repeat=5))
    env.reset(seed=0)
    start = env.env.unwrapped.count
    result = env.step(np.array([0.5]))  # env action 1.0 -> reward 10 + count per step
    assert result.reward == pytest.approx(sum(10.0 + start + k for k in range(5)))
    env.step(np.array([0.0]))
    last = env.step(np.array([0.0]))  # 12-step limit: third call runs 2 env steps and stops
    assert last.truncated and env.env.unwrapped.count == start + 12
    assert env.max_steps == 3


def test_bad_envs_are_config_errors():
    with pytest.raises(ConfigError, match="Discrete action space"):
        PixelEnv(EnvConfig(id="PlanetDiscrete-v0", image_size=16))
    with pytest.raises(ConfigError, match="env.id: 'NoSuchEnv-v9' is not a registered Gymnasium env$"):
        PixelEnv(EnvConfig(id="NoSuchEnv-v9", image_size=16))
    with pytest.raises(ConfigError, match=r"'Pendulm-v1' is not .* \(did you mean 'Pendulum-v1'\?\)"):
        PixelEnv(EnvConfig(id="Pendulm-v1", image_size=16))


def test_resize_averages_areas():
    frame = np.zeros((100, 100, 3), np.uint8)
    frame[:, 50:] = 200
    small = resize_frame(frame, 10)
    assert small.shape == (10, 10, 3) and small[0, 0, 0] == 0 and small[0, -1, 0] == 200


@pytest.mark.parametrize("size", [10, 100])
def test_frames_are_laid_out_as_episode_files_load_them(size):
    """A planar (C, H, W)-in-memory frame would make a batch of freshly collected frames run another
    convolution kernel than the same frames read back from disk after a resume."""
    assert resize_frame(np.zeros((100, 100, 3), np.uint8), size).flags.c_contiguous


def test_episode_seeds_are_distinct_and_stable():
    seeds = {episode_seed(0, i, stream) for i in range(50) for stream in (0, 1)}
    assert len(seeds) == 100 and episode_seed(1, 2, 0) == episode_seed(1, 2, 0)


def test_headless_rendering_prints_nothing():
    code = ("from planet.envs import PixelEnv; from planet.config import EnvConfig; import numpy as np;"
            "e = PixelEnv(EnvConfig()); e.reset(seed=0); e.step(np.zeros(1)); e.close()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "" and out.stderr == ""


def test_rendering_leaves_sigterm_to_python():
    """SDL's own SIGTERM handler would swallow `kill`: the process must die of it, not sleep on."""
    code = ("from planet.envs import PixelEnv; from planet.config import EnvConfig; import os, signal, time;"
            "e = PixelEnv(EnvConfig()); e.reset(seed=0); os.kill(os.getpid(), signal.SIGTERM); time.sleep(5);"
            "print('survived')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert out.returncode == -signal.SIGTERM and "survived" not in out.stdout


def test_center_crop_keeps_the_middle():
    frame = np.arange(100 * 100 * 3, dtype=np.int64).reshape(100, 100, 3)
    assert center_crop(frame, 1.0) is frame
    middle = center_crop(frame, 0.5)
    assert middle.shape == (50, 50, 3) and np.array_equal(middle, frame[25:75, 25:75])
    env = PixelEnv(EnvConfig(id="Pendulum-v1", image_size=64, crop=0.55))
    obs = env.reset(seed=0)
    assert obs.shape == (64, 64, 3)
    assert (obs.min(-1) < 200).mean() > 0.03  # the rod covers more of a cropped frame
    env.close()


def test_an_env_is_named_by_the_module_that_registers_it(tmp_path, monkeypatch):
    """`module:EnvId-v0`, as gym.make takes it: the module is imported first; what can go wrong is one line."""
    (tmp_path / "user_envs_a.py").write_text(
        "import gymnasium\nfrom toy_env import CounterEnv\n"
        "gymnasium.register('UserCounter-v0', entry_point=CounterEnv, max_episode_steps=12)\n")
    (tmp_path / "user_envs_b.py").write_text("REGISTERS = 'nothing'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    env = PixelEnv(EnvConfig(id="user_envs_a:UserCounter-v0", image_size=16, action_repeat=1))
    assert env.reset(seed=0).shape == (16, 16, 3) and env.max_steps == 12
    env.close()
    with pytest.raises(ConfigError, match="env.id: module 'user_envs_c' not found"):
        PixelEnv(EnvConfig(id="user_envs_c:UserCounter-v0"))
    with pytest.raises(ConfigError, match="env.id: importing user_envs_b registered no env 'Nope-v0'"):
        PixelEnv(EnvConfig(id="user_envs_b:Nope-v0"))
