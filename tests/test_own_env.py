"""A user's own env (examples/reach.py, named `module:EnvId` in params.yaml) through the tiny pipeline
on real DVC, git and MLflow."""
from __future__ import annotations

import json
import shutil

import numpy as np
from test_pipeline import ROOT, make_project, ran_stages, run, tiny_params

from planet.config import EnvConfig
from planet.envs import PixelEnv

REACH = "examples.reach:Reach-v0"


def test_the_example_env_has_what_an_own_env_may_have():
    env = PixelEnv(EnvConfig(id=REACH, image_size=32, action_repeat=2, crop=1.0))
    raw = env.env.unwrapped
    assert raw.render().shape == (48, 64, 3) and raw.observation_space.dtype == np.float64  # wide, float64
    assert env.low.tolist() == [-0.5, -1.0] and env.high.tolist() == [1.0, 1.0]  # asymmetric in x
    frame = env.reset(0)
    assert frame.shape == (32, 32, 3) and frame.dtype == np.uint8
    raw.pos = raw.target - np.array([0.1, 0.0])  # one step right from the target: reached, the episode ends
    result = env.step(np.array([1.0, 0.0], np.float32))  # env units (1, 0): [-0.5, 1] x [-1, 1] mapped from [-1, 1]
    assert result.terminated and -0.08 < result.reward <= 0


def own_env_params(params: dict) -> dict:
    params = tiny_params(params)
    params["env"].update(id=REACH, crop=1.0, action_repeat=2)  # 30 agent steps per episode
    params["evaluate"]["episodes"] = 1
    params["dream"].update(episodes=1, context_frames=3, dream_steps=5)
    return params


def test_an_own_env_module_runs_the_pipeline_end_to_end(tmp_path):
    project = make_project(tmp_path, own_env_params)
    shutil.copytree(ROOT / "examples", project / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    out = run(["dvc", "repro"], project)
    assert ran_stages(out.stdout) == ["check", "seed", "train", "evaluate", "dream"]
    evaluation = json.loads((project / "metrics/eval.json").read_text())
    assert len(evaluation["returns"]) == 1
    train = json.loads((project / "metrics/train.json").read_text())
    assert train["iterations"] == 3 and train["episodes"] == 5

    (project / "examples/reach.py").rename(project / "examples/moved.py")  # the module gone: one line
    (project / "params.yaml").write_text((project / "params.yaml").read_text().replace("seq_len: 8", "seq_len: 7"))
    failed = run(["dvc", "repro"], project, check=False)
    assert failed.returncode != 0
    assert "error: env.id: module 'examples.reach' not found" in failed.stderr + failed.stdout
