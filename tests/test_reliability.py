"""Bad params, bad stores, a model file anywhere, and SIGTERM, on real DVC with tiny params."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_pipeline import ITERATIONS, make_project, ran_stages, run, tiny_params

from planet.config import ConfigError
from planet.params import load_params

ROOT = Path(__file__).resolve().parent.parent
OUTPUTS = ["models/model.pt", "metrics/train.json", "metrics/eval.json", "runs/train.json", "plots/train.csv"]


def snapshot(project: Path) -> dict[str, bytes]:
    return {name: (project / name).read_bytes() for name in OUTPUTS}


@pytest.fixture(scope="module")
def done_project(tmp_path_factory):
    path = make_project(tmp_path_factory.mktemp("reliability"))
    run(["dvc", "repro"], path)
    return path


def set_key(params, dotted, value):
    *parents, key = dotted.split(".")
    node = params
    for p in parents:
        node = node[p]
    node[key] = value
    return params


def delete_key(params, dotted):
    *parents, key = dotted.split(".")
    node = params
    for p in parents:
        node = node[p]
    del node[key]
    return params


BAD = [
    (lambda p: set_key(p, "train.batch_size", 0), "train.batch_size: must be a positive integer, got 0"),
    (lambda p: set_key(p, "train.iterations", -3), "train.iterations: must be a positive integer, got -3"),
    (lambda p: set_key(p, "train.lr", "fast"), "train.lr: must be a number, got 'fast'"),
    (lambda p: set_key(p, "train.lr", float("nan")), "train.lr: must be finite"),
    (lambda p: set_key(p, "train.kl_beta", float("inf")), "train.kl_beta: must be finite"),
    (lambda p: set_key(p, "planner.top_k", 64), "planner.top_k: 64 is more than planner.candidates (32)"),
    (lambda p: set_key(p, "train.lrr", 0.1), "train.lrr: unknown key (did you mean 'train.lr'?)"),
    (lambda p: set_key(p, "trian", {}), "trian: unknown key (did you mean 'train'?)"),
    (lambda p: delete_key(p, "evaluate"), "evaluate"),
    (lambda p: set_key(p, "planner", [1, 2]), "planner"),
    (lambda p: set_key(p, "train.seq_len", 500), "train.seq_len: 500 is longer than an episode of Pendulum-v1"),
    (lambda p: set_key(p, "env.image_size", 50), "env.image_size: 50 cannot be taken by the model"),
    (lambda p: set_key(p, "env.id", "dm_control/cartpole-swingupp-v0"),
     "env.id: 'dm_control/cartpole-swingupp-v0' is not a registered Gymnasium env "
     "(did you mean 'dm_control/cartpole-swingup-v0'?)"),
    (lambda p: set_key(p, "env.id", "CartPole-v1"), "env.id: CartPole-v1 has a Discrete action space"),
    (lambda p: set_key(p, "runtime.device", "cuda"), "runtime.device: cuda was asked for but torch sees no CUDA"),
    (lambda p: set_key(p, "runtime.precision", "fp16"), "runtime.precision: must be one of auto, fp32, bf16"),
    (lambda p: set_key(p, "evaluate.episodes", 0), "evaluate.episodes: must be a positive integer"),
    (lambda p: set_key(p, "dream.context_frames", 2.5), "dream.context_frames: must be an integer, got 2.5"),
    (lambda p: set_key(p, "seed", -1), "seed: must be a non-negative integer, got -1"),
    (lambda p: set_key(p, "env.action_repeat", True), "env.action_repeat: must be an integer, got True"),
    (lambda p: set_key(p, "model.min_std", 0), "model.min_std: must be a positive number, got 0"),
    (lambda p: set_key(p, "train.bit_depth", 9), "train.bit_depth: must be within 1..8, got 9"),
    (lambda p: set_key(p, "env.crop", 0), "env.crop: must be a positive number, got 0"),
]


@pytest.mark.parametrize("edit, message", BAD, ids=[m.split(":")[0] + f"-{i}" for i, (_, m) in enumerate(BAD)])
def test_each_bad_param_is_named_by_the_params_loader(edit, message, tmp_path):
    """The message each stage and `planet` print for a bad params.yaml (`planet.params.load_params`)."""
    params = tiny_params(yaml.safe_load((ROOT / "params.yaml").read_text()))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(edit(params), sort_keys=False))
    with pytest.raises(ConfigError) as refused:
        load_params(tmp_path / "params.yaml")
    assert message in str(refused.value) and "\n" not in str(refused.value)


# Through DVC, one of each kind: a key's value, an unknown key, what needs the env, what needs the
# machine, and a section gone (DVC itself refuses before any stage runs).
THROUGH_DVC = [case for case in BAD if case[1] == "evaluate" or case[1].startswith(
    ("train.lr: must be a number", "train.lrr", "env.id: 'dm_", "runtime.device"))]


@pytest.mark.parametrize("edit, message", THROUGH_DVC, ids=[m.split(":")[0] for _, m in THROUGH_DVC])
def test_bad_params_fail_fast_with_one_line_and_touch_nothing(done_project, edit, message):
    params_path = done_project / "params.yaml"
    original = params_path.read_text()
    before = snapshot(done_project)
    try:
        params_path.write_text(yaml.safe_dump(edit(yaml.safe_load(original)), sort_keys=False))
        out = run(["dvc", "repro"], done_project, check=False)
    finally:
        params_path.write_text(original)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "Traceback" not in text
    assert message in text, text
    assert ran_stages(out.stdout) in ([], ["check"])  # refused by DVC or by `check`, before any work
    ours = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(ours) <= 1  # exactly one from us, or DVC's own one-line refusal
    assert snapshot(done_project) == before


def test_unparsable_yaml_is_refused(done_project):
    params_path = done_project / "params.yaml"
    original = params_path.read_text()
    before = snapshot(done_project)
    try:
        params_path.write_text(original + "\ntrain: [\n")
        out = run(["dvc", "repro"], done_project, check=False)
    finally:
        params_path.write_text(original)
    assert out.returncode != 0 and "Traceback" not in out.stdout + out.stderr
    assert snapshot(done_project) == before


def test_fewer_iterations_than_trained_is_one_line(done_project):
    params_path = done_project / "params.yaml"
    original = params_path.read_text()
    checkpoints = {p.name: p.read_bytes() for p in (done_project / "checkpoints").iterdir()}
    try:
        params_path.write_text(original.replace(f"iterations: {ITERATIONS}\n", "iterations: 1\n", 1))
        out = run([sys.executable, "-m", "stages.train"], done_project, check=False)
    finally:
        params_path.write_text(original)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"train.iterations: 1 is fewer than the {ITERATIONS} this run has already trained" in out.stderr
    assert {p.name: p.read_bytes() for p in (done_project / "checkpoints").iterdir()} == checkpoints  # kept


def test_a_model_file_is_evaluated_anywhere(done_project, tmp_path):
    """`python -m planet evaluate` on a copied model.pt, in an empty folder with no params.yaml."""
    (tmp_path / "model.pt").write_bytes((done_project / "models/model.pt").read_bytes())
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-m", "planet", "evaluate", "model.pt", "--episodes", "2", "--video",
                          "watch.mp4", "--candidates", "24", "--top-k", "3", "--iterations", "2", "--no-warm-start"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("return ")
    assert "over 2 episodes of Pendulum-v1 (CEM 24/3/2, each plan from zero" in out.stdout
    assert (tmp_path / "watch.mp4").stat().st_size > 0
    out = subprocess.run([sys.executable, "-m", "planet", "dream", "model.pt", "--episodes", "1", "--out", "d"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "d/videos/dream_0.mp4").exists() and (tmp_path / "d/error.png").exists()
    out = subprocess.run([sys.executable, "-m", "planet", "evaluate", "missing.pt"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and out.stderr.startswith("error: missing.pt") and "Traceback" not in out.stderr
    out = subprocess.run([sys.executable, "-m", "planet", "evaluate", "model.pt", "--candidates", "4", "--top-k", "8"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: planner.top_k: 8 is more than planner.candidates")


def test_unusable_tracking_store_stops_train_before_any_work(done_project):
    before = {p.name: p.read_bytes() for p in (done_project / "checkpoints").iterdir()}
    store = f"sqlite:///{done_project}/params.yaml/mlflow.db"  # a file where a folder must be
    env = {**os.environ, "MLFLOW_TRACKING_URI": store}
    out = subprocess.run([sys.executable, "-m", "stages.train"], cwd=done_project, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "MLflow tracking store sqlite:///" in errors[0] and "cannot be used" in errors[0]
    assert {p.name: p.read_bytes() for p in (done_project / "checkpoints").iterdir()} == before


def test_sigterm_stops_a_stage_like_ctrl_c():
    """`kill` (or a scheduler's SIGTERM) mid-stage: one line, non-zero exit, after the env has rendered."""
    code = ("from stages.common import entry_point; from planet.envs import PixelEnv; "
            "from planet.config import EnvConfig; import os, signal, time\n"
            "@entry_point\ndef main():\n    PixelEnv(EnvConfig()).reset(seed=0)\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n    time.sleep(5)\n    print('survived')\nmain()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 2 and "survived" not in out.stdout
    assert out.stderr.strip().splitlines() == ["error: interrupted; rerun `dvc repro` to continue (train "
                                               "resumes from its newest checkpoint)"]
