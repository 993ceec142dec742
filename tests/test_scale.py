"""The team set-up at its smallest: scripts/scale_demo.py with the pipeline test's tiny params, one iteration.

Real PostgreSQL, MLflow server, two Ray nodes, bare git remote and local-directory DVC remote, all on
127.0.0.1 in a network namespace of their own; the demo checks the fresh clones and the MLflow runs
itself and fails on any process left behind. Plus the sweep's checks that need no cluster."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_pipeline import ROOT, tiny_params

from experiments import sweep
from experiments.sweep import SweepConfig, SweepError, make_trials, parse_setting


def load_demo():
    spec = importlib.util.spec_from_file_location("scale_demo", ROOT / "scripts" / "scale_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_trials_are_the_product_of_the_settings_named_by_what_varies():
    cfg = SweepConfig((parse_setting("seed=0,1"), parse_setting("env.id=dm_control/cartpole-swingup-v0,Pendulum-v1")))
    trials = make_trials(cfg)
    assert [t.name for t in trials] == ["sweep-seed0-iddm_control-cartpole-swingup-v0", "sweep-seed0-idPendulum-v1",
                                        "sweep-seed1-iddm_control-cartpole-swingup-v0", "sweep-seed1-idPendulum-v1"]
    assert trials[1].settings == ("seed=0", "env.id=Pendulum-v1")
    fixed = make_trials(SweepConfig((parse_setting("seed=0,1"), parse_setting("train.lr=0.0003"))))
    other = make_trials(SweepConfig((parse_setting("seed=0,1"), parse_setting("train.lr=0.0001"))))
    assert fixed[0].name.startswith("sweep-seed0-") and fixed[0].name != other[0].name  # fixed values count


@pytest.mark.parametrize("argv, message", [
    (["-S", "seed"], "expected key=value"),
    (["-S", "seed=0,,1"], "expected key=value"),
    ([], "give at least one -S"),
    (["-S", "seed=0", "-S", "seed=1"], "a key is given twice"),
])
def test_bad_sweep_input_is_one_line(argv, message, capsys):
    assert sweep.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_sweep_refuses_a_file_tracking_store(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    with pytest.raises(SweepError, match="team's MLflow server"):
        sweep.check_tracking()


def test_an_unreachable_ray_head_is_one_line_at_once():
    with pytest.raises(SweepError, match="the Ray head at 127.0.0.1:1 is unreachable"):
        sweep.check_ray_address("127.0.0.1:1")
    with pytest.raises(SweepError, match="expected auto or host:port"):
        sweep.check_ray_address("head-node")


@pytest.mark.skipif(load_demo().postgres_bin() is None, reason="PostgreSQL is not installed (.ci/run installs it)")
@pytest.mark.skipif(os.geteuid() != 0, reason="the scale demo needs root (a network namespace)")
def test_scale_demo_at_its_smallest(tmp_path):
    params = tiny_params(yaml.safe_load((ROOT / "params.yaml").read_text()))
    params["train"]["iterations"] = 1
    params["evaluate"]["episodes"] = 1
    params["dream"]["episodes"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    demo = [sys.executable, str(ROOT / "scripts/scale_demo.py"), "--params", str(tmp_path / "params.yaml")]
    proc = subprocess.Popen(demo, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=1500)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: the demo stops every process it started before it exits
        stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, f"{stdout[-3000:]}\n{stderr[-3000:]}"
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("scale-demo: passed") and "2 trials on 2 Ray nodes" in last and "nothing left" in last
    assert "behind basic auth, the model evaluated by runs:/ and models:/" in last
