"""planet.trained: a model file rebuilds its own network and acts on raw frames, with no params."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from test_trainer import FP32

import planet
from planet.checkpoint import CheckpointError, TrainProgress, write_checkpoint
from planet.config import Config, EnvConfig, PlannerConfig, RuntimeConfig, TrainConfig, load_config
from planet.envs import PixelEnv
from planet.runtime import PLAIN, Runtime
from planet.trained import build_model
from planet.trainer import Trainer


@pytest.fixture
def model_file(tmp_path, tiny_model_cfg):
    """A Pendulum model file as the train stage writes it: weights, resolved config, action bounds."""
    cfg = Config(env=EnvConfig(id="Pendulum-v1", image_size=16, action_repeat=4, crop=0.55), model=tiny_model_cfg,
                 train=TrainConfig(batch_size=2, seq_len=4), planner=PlannerConfig(candidates=16, top_k=4, horizon=3,
                                                                                     iterations=2),
                 runtime=FP32)
    env = PixelEnv(cfg.env)
    trainer = Trainer(cfg, env.action_size, PLAIN, env.low, env.high)
    env.close()
    path = tmp_path / "model.pt"
    write_checkpoint(path, trainer.checkpoint("fp", TrainProgress(iteration=3), weights_only=True))
    return path, trainer


def test_load_model_rebuilds_the_trained_network_from_the_file_alone(model_file, tiny_model_cfg):
    path, trainer = model_file
    model, cfg = planet.load_model(path)
    assert cfg == trainer.cfg and cfg.model == tiny_model_cfg
    for name, tensor in trainer.model.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    assert not model.training


def test_a_model_under_a_config_that_does_not_fit_is_one_line(model_file):
    path, trainer = model_file
    from planet.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    other = dataclasses.replace(trainer.cfg, model=dataclasses.replace(trainer.cfg.model, cnn_depth=8))
    with pytest.raises(CheckpointError) as err:
        build_model(ckpt, other, path, torch.device("cpu"))
    assert str(err.value) == f"{path}: trained under other settings than these (model.cnn_depth: 4 -> 8)"
    car = dataclasses.replace(trainer.cfg.env, id="MountainCarContinuous-v0")
    other_env = dataclasses.replace(trainer.cfg, env=car)
    with pytest.raises(CheckpointError, match=r"env.id: 'Pendulum-v1' -> 'MountainCarContinuous-v0'"):
        build_model(ckpt, other_env, path, torch.device("cpu"))
    size = trainer.cfg.env.image_size
    bigger = dataclasses.replace(trainer.cfg, env=dataclasses.replace(trainer.cfg.env, image_size=2 * size))
    with pytest.raises(CheckpointError, match=rf"env.image_size: {size} -> {2 * size}"):
        build_model(ckpt, bigger, path, torch.device("cpu"))


def test_load_agent_acts_on_a_raw_frame_in_env_units(model_file):
    path, _ = model_file
    agent = planet.load_agent(path)
    env = PixelEnv(EnvConfig(id="Pendulum-v1", image_size=16, action_repeat=4, crop=0.55))
    env.reset(seed=0)
    frame = env.env.render()  # (500, 500, 3), as Gymnasium renders it
    env.close()
    assert frame.shape == (500, 500, 3)
    actions = [agent.act(frame) for _ in range(3)]
    assert all(a.shape == (1,) and -2.0 <= a[0] <= 2.0 for a in actions)  # Pendulum's torque bounds
    assert any(abs(a[0]) > 1.0 for a in actions) or len({float(a[0]) for a in actions}) > 1
    agent.reset()
    again = planet.load_agent(path)
    assert np.array_equal(again.act(frame), planet.load_agent(path).act(frame))  # seeded: repeatable
    with pytest.raises(ValueError, match="expected an \\(H, W, 3\\) uint8 frame"):
        agent.act(frame.astype(np.float32))


def test_an_agent_plans_in_the_precision_it_was_trained_in_and_leaves_the_thread_count_alone(tmp_path,
                                                                                             tiny_model_cfg):
    cfg = Config(env=EnvConfig(id="Pendulum-v1", image_size=16, action_repeat=4, crop=0.55), model=tiny_model_cfg,
                 runtime=RuntimeConfig(precision="bf16", threads=1, compile=True))
    trainer = Trainer(cfg, 1, Runtime(bf16=True, threads=1))
    write_checkpoint(tmp_path / "model.pt", trainer.checkpoint("fp", TrainProgress(iteration=1), weights_only=True))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        runtime = planet.load_agent(tmp_path / "model.pt").agent.planner.runtime
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert runtime.bf16 and not runtime.compile and runtime.device.type == "cpu"


def test_the_model_file_records_the_config_it_was_trained_with(model_file):
    path, trainer = model_file
    from planet.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    assert load_config(ckpt.config) == trainer.cfg and ckpt.config["runtime"]["precision"] in ("fp32", "bf16")
    assert ckpt.action_low == [-2.0] and ckpt.action_high == [2.0] and ckpt.engine == planet.__version__
    assert ckpt.optimizer == {} and ckpt.rng == {}


def test_engine_version_matches_the_package():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    assert project["project"]["version"] == planet.__version__


def test_a_checkpoint_of_an_older_format_is_one_line(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"format": "planet-checkpoint/1", "model": {}}, path)
    with pytest.raises(CheckpointError, match="written by an older version of this project"):
        planet.load_model(path)


