"""Every `-S key=value` profile in profiles/ names real keys and yields a valid config."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from planet import bench
from planet.config import Config, load_config
from planet.model import WorldModel, parameter_count
from planet.notebook import NOTEBOOK, notebook_config
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


def test_code_defaults_are_the_committed_params():
    params = load_config(read_params((ROOT / "params.yaml").read_text()))
    assert params == Config()


def test_the_notebook_profile_restores_the_notebooks_config_and_nothing_else():
    params = read_params((ROOT / "params.yaml").read_text())
    cfg = load_config(apply_overrides(params, (ROOT / "profiles/notebook.args").read_text())).flat()
    ours = Config().flat()
    changed = {key: value for key, value in cfg.items() if value != ours[key]}
    assert changed == NOTEBOOK
    assert load_config(apply_overrides(read_params((ROOT / "params.yaml").read_text()),
                                       (ROOT / "profiles/notebook.args").read_text())) == notebook_config()


def test_params_yaml_marks_exactly_the_notebooks_values():
    """Each `key: value  # notebook: X` comment in params.yaml is the notebook's value of that key."""
    marked, section = {}, ""
    for line in (ROOT / "params.yaml").read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            section = line.split(":")[0]
        found = re.match(r"\s+(\w+): .*# notebook: ([^ ;(]+)", line)
        if found:
            marked[f"{section}.{found[1]}"] = read_params(found[2])
    assert marked == NOTEBOOK


def test_the_bench_times_the_notebooks_sizes():
    assert bench.NOTEBOOK == notebook_config()
    assert parameter_count(WorldModel(bench.NOTEBOOK.model, action_size=1, image_size=64)) == 7_310_436


def test_params_and_checkpoints_that_name_the_network_seed_still_load():
    """The notebook's network was called `seed` before; older params and checkpoints say so."""
    for old, now in (("seed", "notebook"), ("notebook", "notebook"), ("paper", "paper")):
        params = read_params((ROOT / "params.yaml").read_text())
        params["model"]["network"] = old
        assert load_config(params).model.network == now


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
