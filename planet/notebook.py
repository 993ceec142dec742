"""The tutorial notebook's configuration, the project's baseline: where its `Config` differs from
ours (`Config()`, which equals `params.yaml`). This is the one copy of those values:
`profiles/notebook.args`, the `# notebook:` comments in `params.yaml` and `planet.bench`'s sizes
are checked against it (tests/test_profiles.py)."""
from __future__ import annotations

import dataclasses

from planet.config import Config, load_config

NOTEBOOK = {
    "env.action_repeat": 1, "env.crop": 1.0, "model.decoder_output": "sigmoid",
    "train.iterations": 100, "train.steps_per_iteration": 50, "train.seq_len": 25, "train.lr": 1e-4,
    "train.adam_eps": 1e-8, "train.weight_decay": 0.01, "train.grad_clip": 100.0, "train.free_nats": 0.0,
    "train.kl_beta": 0.1, "train.overshoot_beta": 0.1, "train.reward_scale": 1.0, "train.bit_depth": 8,
    "train.checkpoint_every": 10,
    "planner.candidates": 1000, "planner.top_k": 100, "planner.iterations": 10, "planner.warm_start": False,
    "evaluate.episodes": 5, "evaluate.horizon": 0,
}


def notebook_config(base: Config | None = None) -> Config:
    """`base` (default: `Config()`) with the notebook's values."""
    raw = dataclasses.asdict(base or Config())
    for key, value in NOTEBOOK.items():
        section, name = key.split(".")
        raw[section][name] = value
    return load_config(raw)
