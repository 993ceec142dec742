"""The DeepMind Control Suite through shimmy: frames, episode ends, ids, presets, and a tiny pipeline."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_pipeline import make_project, ran_stages, run, tiny_params
from test_profiles import apply_overrides

from planet.agent import run_episodes
from planet.config import ConfigError, EnvConfig, load_config
from planet.envs import PixelEnv, known_env_spec
from planet.params import read_params

ROOT = Path(__file__).resolve().parent.parent
CARTPOLE = "dm_control/cartpole-swingup-v0"
# The paper's action repeat per task (Hafner et al. 2019, Table 1's setup).
PAPER_ACTION_REPEAT = {"cartpole-swingup": 8, "reacher-easy": 4, "cheetah-run": 4, "finger-spin": 2,
                       "cup-catch": 4, "walker-walk": 2}
FIRST_FRAME = (
    "from planet.envs import PixelEnv; from planet.config import EnvConfig; import hashlib;"
    f"e = PixelEnv(EnvConfig(id='{CARTPOLE}', image_size=64, crop=1.0)); "
    "print(hashlib.sha256(e.reset(seed=7).tobytes()).hexdigest())")


def orange_pixels(frame: np.ndarray) -> int:
    """The cart and pole are the only orange things in the cartpole scene."""
    red, blue = frame[..., 0].astype(int), frame[..., 2].astype(int)
    return int(((red > 150) & (red > blue + 60)).sum())


def test_dmc_frames_are_camera_0_at_image_size_and_seeded():
    env = PixelEnv(EnvConfig(id=CARTPOLE, image_size=64, crop=1.0))
    first = env.reset(seed=7)
    assert first.shape == (64, 64, 3) and first.dtype == np.uint8
    assert np.array_equal(first, env.reset(seed=7)) and not np.array_equal(first, env.reset(seed=8))
    # Camera 0 frames the cart and pole (about 50 pixels at 64x64); shimmy's default free camera
    # (id -1) shows them far away, in under 20.
    assert orange_pixels(first) >= 40
    env.close()
    other_process = subprocess.run([sys.executable, "-c", FIRST_FRAME], capture_output=True, text=True, check=True)
    assert other_process.stdout.strip() == hashlib.sha256(first.tobytes()).hexdigest()


def test_dmc_episode_is_1000_env_steps_ending_in_truncation():
    env = PixelEnv(EnvConfig(id=CARTPOLE, image_size=16, action_repeat=8, crop=1.0))
    assert env.env_step_limit == 1000 and env.max_steps == 125
    (episode,) = run_episodes([env], [0], rng=np.random.default_rng(0))
    env.close()
    assert len(episode.action) == 125 and episode.obs.shape == (126, 16, 16, 3)
    assert episode.truncated[-1] and not episode.truncated[:-1].any() and not episode.terminal.any()
    assert 0 <= episode.reward.min() and episode.reward.max() <= 8  # per-step rewards in [0, 1], summed over 8


def test_dmc_action_bounds_are_the_envs_own():
    env = PixelEnv(EnvConfig(id="dm_control/cheetah-run-v0", image_size=16, action_repeat=4))
    assert env.action_size == 6 and np.allclose(env.low, -1) and np.allclose(env.high, 1)
    env.close()


def test_making_a_dmc_env_leaves_the_processs_warning_filters_as_they_were():
    """dm_control's composer sets every DeprecationWarning to "always" when first imported, which
    printed 14 of torch's on every compile and SQLAlchemy's through MLflow in every stage."""
    script = ("import warnings; from planet.envs import PixelEnv; from planet.config import EnvConfig; "
              f"PixelEnv(EnvConfig(id='{CARTPOLE}', image_size=16, crop=1.0)).close(); "
              "warnings.warn_explicit('old API', DeprecationWarning, 'lib.py', 1, module='lib')")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert "DeprecationWarning" not in out.stderr  # Python's default: a library's deprecations are not shown


def test_dm_controls_cheetah_asset_notice_is_dropped_and_other_mujoco_warnings_show():
    script = ("import logging; from planet.envs import PixelEnv; from planet.config import EnvConfig; "
              "PixelEnv(EnvConfig(id='dm_control/cheetah-run-v0', image_size=16)).close(); "
              "logging.getLogger('absl').warning('Nan, Inf or huge value in QACC at DOF 0.')")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert "settotalmass" not in out.stderr and "Nan, Inf or huge value in QACC" in out.stderr, out.stderr


@pytest.mark.parametrize("bad, suggestion", [("dm_control/cartpole-swingupp-v0", "dm_control/cartpole-swingup-v0"),
                                             ("dm_control/chetah-run-v0", "dm_control/cheetah-run-v0"),
                                             ("dm_control/walker-walk-v9", "dm_control/walker-walk-v0")])
def test_unknown_dmc_domain_or_task_is_one_line_with_a_suggestion(bad, suggestion):
    with pytest.raises(ConfigError) as err:
        known_env_spec(bad)
    assert str(err.value) == f"env.id: '{bad}' is not a registered Gymnasium env (did you mean '{suggestion}'?)"


@pytest.mark.parametrize("task", sorted(PAPER_ACTION_REPEAT))
def test_each_paper_task_has_a_preset_with_the_papers_action_repeat(task):
    params = read_params((ROOT / "params.yaml").read_text())
    cfg = load_config(apply_overrides(params, (ROOT / "profiles" / f"{task}.args").read_text()))
    suite_task = task.replace("cup-", "ball_in_cup-")  # the suite's name for cup catch
    assert cfg.env.id == f"dm_control/{suite_task}-v0" and cfg.env.action_repeat == PAPER_ACTION_REPEAT[task]
    assert known_env_spec(cfg.env.id).id == cfg.env.id
    assert cfg.model.network == "paper" and cfg.env.crop == 1.0
    env_steps = 1000 * (cfg.data.seed_episodes + cfg.train.iterations)  # one 1,000-step episode per iteration
    assert env_steps == 100_000


def test_each_preset_has_a_make_target():
    makefile = (ROOT / "Makefile").read_text()
    tasks = re.search(r"^DMC_TASKS\s*:=\s*(.+)$", makefile, re.M).group(1).split()
    assert sorted(tasks) == sorted(PAPER_ACTION_REPEAT)


def tiny_dmc_params(params: dict) -> dict:
    params = tiny_params(params)
    params["env"].update(id=CARTPOLE, image_size=64, action_repeat=50, crop=1.0)  # 20 decisions an episode
    params["model"].update(network="paper", cnn_depth=4, embed_size=128)
    return params


def test_tiny_pipeline_on_cartpole_swingup(tmp_path):
    project = make_project(tmp_path, tiny_dmc_params)
    out = run(["dvc", "repro"], project)
    assert ran_stages(out.stdout) == ["check", "seed", "train", "evaluate", "dream"]
    assert "Warning" not in out.stdout + out.stderr  # the stages' own lines, not their libraries'
    train = json.loads((project / "metrics/train.json").read_text())
    assert train["env_steps"] == 1000 * (2 + train["iterations"])
    evaluation = json.loads((project / "metrics/eval.json").read_text())
    assert all(0 <= r <= 1000 for r in evaluation["returns"])
    assert not list(project.rglob("MUJOCO_LOG.TXT"))
    episode = np.load(project / "data/seed/episode_000000.npz")
    assert episode["obs"].shape == (21, 64, 64, 3) and episode["truncated"][-1]
