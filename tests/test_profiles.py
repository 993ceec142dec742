"""Every `-S key=value` profile in profiles/ names real keys and yields a valid config."""
from __future__ import annotations

from pathlib import Path

import pytest

from planet.config import Config, load_config
from stages.common import read_params

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


def test_seed_profile_restores_the_seed_config():
    """The seed notebook's Config is the dataclass defaults; profiles/seed.args gets back to it."""
    params = read_params((ROOT / "params.yaml").read_text())
    cfg = load_config(apply_overrides(params, (ROOT / "profiles/seed.args").read_text()))
    seed = Config()
    for section in ("env", "data", "model", "train", "planner", "evaluate"):
        assert getattr(cfg, section) == getattr(seed, section), section


def test_params_read_exponent_floats_as_dvc_writes_them():
    """`dvc exp run -S train.lr=1e-3` writes `lr: 1e-3`, a string to YAML 1.1 but a float to us."""
    raw = read_params("train:\n  lr: 1e-3\n  adam_eps: -1E-08\n  iterations: 10\n  x: .inf\n  y: fast\n")
    assert raw["train"] == {"lr": 1e-3, "adam_eps": -1e-8, "iterations": 10, "x": float("inf"), "y": "fast"}
    assert isinstance(raw["train"]["iterations"], int)
