"""Every `-S key=value` profile in profiles/ names real keys and yields a valid config."""
from __future__ import annotations

from pathlib import Path

import pytest

from planet.config import Config, load_config
from planet.params import read_params

ROOT = Path(__file__).resolve().parent.parent


def apply_overrides(params: dict, args: str) -> dict:
    """What `dvc exp run -S a.b=v` does to params.yaml, for the keys a profile sets."""
    tokens = args.split()
    assert tokens[::2] == ["-S"] * (len(tokens) // 2), f"not a list of -S overrides: {args!r}"
    for override in tokens[1::2]:
        dotted, value = override.split("=", 1)
        *parents, key = dotted.split(".")
        node = params
        for parent in parents:
            node = node[parent]
        assert key in node, f"{dotted}: not a key of params.yaml"
        node[key] = read_params(value)
    return params


@pytest.mark.parametrize("profile", sorted(p.name for p in (ROOT / "profiles").glob("*.args")))
def test_profile_is_valid(profile):
    params = read_params((ROOT / "params.yaml").read_text())
    cfg = load_config(apply_overrides(params, (ROOT / "profiles" / profile).read_text()))
    assert isinstance(cfg, Config)


# The seed notebook's `Config`, where it differs from ours (its README calls these the contract).
SEED = {"env.action_repeat": 1, "env.crop": 1.0, "model.decoder_output": "sigmoid", "train.iterations": 100,
        "train.steps_per_iteration": 50, "train.seq_len": 25, "train.lr": 1e-4, "train.adam_eps": 1e-8,
        "train.weight_decay": 0.01, "train.grad_clip": 100.0, "train.free_nats": 0.0, "train.kl_beta": 0.1,
        "train.overshoot_beta": 0.1, "train.reward_scale": 1.0, "train.bit_depth": 8, "train.checkpoint_every": 10,
        "planner.candidates": 1000, "planner.top_k": 100, "planner.iterations": 10, "planner.warm_start": False,
        "evaluate.episodes": 5, "evaluate.horizon": 0}


def test_code_defaults_are_the_committed_params():
    params = load_config(read_params((ROOT / "params.yaml").read_text()))
    assert params == Config()


def test_seed_profile_restores_the_seed_config():
    """profiles/seed.args turns the defaults into the seed notebook's Config, and nothing else."""
    params = read_params((ROOT / "params.yaml").read_text())
    cfg = load_config(apply_overrides(params, (ROOT / "profiles/seed.args").read_text())).flat()
    ours = Config().flat()
    changed = {key: value for key, value in cfg.items() if value != ours[key]}
    assert changed == SEED


def test_params_read_exponent_floats_as_dvc_writes_them():
    """`dvc exp run -S train.lr=1e-3` writes `lr: 1e-3`, a string to YAML 1.1 but a float to us."""
    raw = read_params("train:\n  lr: 1e-3\n  adam_eps: -1E-08\n  iterations: 10\n  x: .inf\n  y: fast\n")
    assert raw["train"] == {"lr": 1e-3, "adam_eps": -1e-8, "iterations": 10, "x": float("inf"), "y": "fast"}
    assert isinstance(raw["train"]["iterations"], int)


def test_the_paper_profile_on_a_task_preset_is_the_papers_configuration():
    """`$(cat profiles/cartpole-swingup.args) $(cat profiles/paper.args)`: the later -S wins, as in DVC."""
    params = read_params((ROOT / "params.yaml").read_text())
    for profile in ("cartpole-swingup.args", "paper.args"):
        params = apply_overrides(params, (ROOT / "profiles" / profile).read_text())
    cfg = load_config(params)
    model = cfg.model
    assert (model.cnn_depth, model.embed_size, model.belief_size, model.state_size) == (32, 1024, 200, 30)
    assert (cfg.train.batch_size, cfg.train.seq_len, cfg.train.steps_per_iteration) == (50, 50, 100)
    planner = cfg.planner
    assert (planner.candidates, planner.top_k, planner.iterations, planner.horizon) == (1000, 100, 10, 12)
    assert cfg.env.action_repeat == 8 and cfg.runtime.device == "cuda"
