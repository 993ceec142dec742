"""Bad params, kill-and-resume and determinism, on real DVC with tiny params."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from test_pipeline import ITERATIONS, make_project, mlflow_client, ran_stages, run, tiny_params

from planet.fileio import CRASH_ENV, TEMP_GLOB

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


# The presets' runtime where `auto` picks bf16: autocast, the compiled rollout, one thread per run.
PRESET_RUNTIME = {"precision": "bf16", "compile": True, "threads": 1}


def iterations(count: int, runtime: dict | None = None):
    def edit(params):
        params = tiny_params(params)
        params["train"]["iterations"] = count
        params["runtime"].update(runtime or {})
        return params
    return edit


RESULTS = ["plots/train.csv", "metrics/train.json", "metrics/eval.json", "metrics/dream.json"]


def assert_same_results(expected: Path, actual: Path) -> None:
    for name in RESULTS:  # byte for byte: curves, losses, returns, dream errors
        assert (expected / name).read_bytes() == (actual / name).read_bytes(), name
    # The curves are rounded to 6 digits; the weights show a difference of one rounding step.
    weights = [torch.load(path / "models/model.pt", weights_only=True)["model"] for path in (expected, actual)]
    assert [k for k in weights[0] if not torch.equal(weights[0][k], weights[1][k])] == []


@pytest.fixture(scope="module")
def six_iterations(tmp_path_factory):
    """An uninterrupted six-iteration run: the reference for resumed and extended runs."""
    path = make_project(tmp_path_factory.mktemp("six"), iterations(6))
    run(["dvc", "repro"], path)
    return path


def test_a_resume_in_the_presets_runtime_equals_an_uninterrupted_run(tmp_path):
    """bf16 autocast and the compiled rollout, one thread: a run stopped after its 3rd iteration and
    continued to 6 equals the run that went to 6 at once, to the last bit of every weight."""
    whole = make_project(tmp_path / "whole", iterations(6, PRESET_RUNTIME))
    run(["dvc", "repro", "train"], whole)
    resumed = make_project(tmp_path / "resumed", iterations(3, PRESET_RUNTIME))
    run(["dvc", "repro", "train"], resumed)
    params = yaml.safe_load((resumed / "params.yaml").read_text())
    params["train"]["iterations"] = 6
    (resumed / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert "resuming after iteration 3" in run(["dvc", "repro", "train"], resumed).stdout
    assert (whole / "plots/train.csv").read_text() == (resumed / "plots/train.csv").read_text()
    weights = [torch.load(path / "models/model.pt", weights_only=True)["model"] for path in (whole, resumed)]
    assert [k for k in weights[0] if not torch.equal(weights[0][k], weights[1][k])] == []


def test_a_killed_train_resumes_to_the_same_result(six_iterations, tmp_path):
    """Killed at the worst moments: half-way through writing an episode (iteration 3's), half-way
    through writing a checkpoint (the 4th), and half-way through the episode collected after the 4th
    checkpoint; each rerun resumes from the newest good checkpoint, and two more iterations follow
    the last resume, where a state the checkpoint misses would show."""
    killed = make_project(tmp_path / "killed", iterations(6))
    for half_written in ("data/replay/episode_000004.npz", "checkpoints/checkpoint_000004.pt",
                         "data/replay/episode_000006.npz"):
        out = run(["dvc", "repro"], killed, check=False, extra_env={CRASH_ENV: half_written})
        assert out.returncode != 0
        folder, name = half_written.rsplit("/", 1)
        assert not (killed / half_written).exists()
        assert [p.name.startswith(f".{name}.") for p in (killed / folder).glob(TEMP_GLOB)] == [True]
    # A comment or docstring edit in the engine reruns the stage (DVC hashes files) but keeps the run.
    loss = killed / "planet/loss.py"
    loss.write_text("# an edited comment\n" + loss.read_text().replace('"""', '"""Reworded. ', 1))
    out = run(["dvc", "repro"], killed)
    for folder in ("checkpoints", "data/replay"):  # stale temp files from the kill are swept
        assert not list((killed / folder).glob(".*.tmp*"))
    assert "resuming after iteration 4" in out.stdout
    assert_same_results(six_iterations, killed)
    client = mlflow_client(killed)
    train_id = json.loads((killed / "runs/train.json").read_text())["run_id"]
    experiment = client.get_run(train_id).info.experiment_id
    top_level = [r for r in client.search_runs([experiment]) if "mlflow.parentRunId" not in r.data.tags]
    assert [r.info.run_id for r in top_level] == [train_id]  # the resumed train continued its run
    steps = sorted({m.step for m in client.get_metric_history(train_id, "recon")})
    assert steps == [400 + 200 * i for i in range(1, 7)]


def test_more_iterations_continue_a_finished_run(six_iterations, tmp_path):
    """Raising train.iterations (and changing checkpoint_every, keep_checkpoints: schedule only)
    continues from the last checkpoint and equals the run that was longer from the start."""
    project = make_project(tmp_path / "extended", iterations(4))
    run(["dvc", "repro"], project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"].update(iterations=6, checkpoint_every=2, keep_checkpoints=3)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro"], project)
    assert "resuming after iteration 4" in out.stdout and "starting a new run" not in out.stdout
    assert "runtime.threads" not in out.stdout
    assert_same_results(six_iterations, project)
    # Evaluate and dream log into the continued run, not into a child run of changed params.
    client = mlflow_client(project)
    train_id = json.loads((project / "runs/train.json").read_text())["run_id"]
    runs = client.search_runs([client.get_run(train_id).info.experiment_id])
    assert [r.info.run_id for r in runs] == [train_id]
    assert [m.step for m in client.get_metric_history(train_id, "eval/return_mean")] == [400 + 200 * 4, 400 + 200 * 6]


def test_another_thread_count_continues_the_run_and_says_it_is_not_bit_exact(tmp_path):
    project = make_project(tmp_path / "threads", iterations(1))
    run(["dvc", "repro", "train"], project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["iterations"], params["runtime"]["threads"] = 2, 1
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro", "train"], project).stdout
    assert "resuming after iteration 1" in out
    assert "runtime.threads is 1 where this run had 0; it continues" in out


def test_changed_settings_keep_the_earlier_run_and_changing_back_resumes_it(tmp_path):
    project = make_project(tmp_path / "kept", iterations(2))
    run(["dvc", "repro"], project)
    first = {name: (project / name).read_bytes() for name in [*RESULTS, "models/model.pt"]}
    checkpoints = sorted(p.name for p in (project / "checkpoints").iterdir())
    params_path = project / "params.yaml"
    original = params_path.read_text()
    params_path.write_text(original.replace("lr: 0.001", "lr: 0.002"))
    out = run(["dvc", "repro"], project)
    kept_line = [line for line in out.stdout.splitlines() if "kept it in" in line]
    assert len(kept_line) == 1 and kept_line[0].startswith("train: train.lr changed since the run in checkpoints/")
    listing = run([sys.executable, "-m", "experiments.runs"], project).stdout
    assert "train.lr" in listing and "Pendulum-v1" in listing
    params_path.write_text(original)
    out = run(["dvc", "repro"], project)
    assert "taking it back" in out.stdout and "resuming after iteration 2" in out.stdout
    assert {name: (project / name).read_bytes() for name in first} == first
    assert sorted(p.name for p in (project / "checkpoints").iterdir()) == checkpoints
    # The second run (lr 0.002) is kept now; removing it by id frees its folder.
    (kept,) = [p.name for p in (project / ".planet/runs").iterdir()]
    out = run([sys.executable, "-m", "experiments.runs", "--remove", kept], project)
    assert f"removed kept run {kept}" in out.stdout and not (project / ".planet/runs" / kept).exists()
    bad = run([sys.executable, "-m", "experiments.runs", "--remove", "nosuch"], project, check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("error: no kept run nosuch")


def test_fewer_iterations_than_trained_is_one_line(done_project):
    params_path = done_project / "params.yaml"
    original = params_path.read_text()
    try:
        params_path.write_text(original.replace(f"iterations: {ITERATIONS}\n", "iterations: 1\n", 1))
        out = run([sys.executable, "-m", "stages.train"], done_project, check=False)
    finally:
        params_path.write_text(original)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"train.iterations: 1 is fewer than the {ITERATIONS} this run has already trained" in out.stderr


def test_a_model_file_is_evaluated_anywhere(done_project, tmp_path):
    """`python -m planet evaluate` on a copied model.pt, in an empty folder with no params.yaml."""
    (tmp_path / "model.pt").write_bytes((done_project / "models/model.pt").read_bytes())
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-m", "planet", "evaluate", "model.pt", "--episodes", "2", "--video",
                          "watch.mp4"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("return ") and "over 2 episodes of Pendulum-v1" in out.stdout
    assert (tmp_path / "watch.mp4").stat().st_size > 0
    out = subprocess.run([sys.executable, "-m", "planet", "dream", "model.pt", "--episodes", "1", "--out", "d"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "d/videos/dream_0.mp4").exists() and (tmp_path / "d/error.png").exists()
    out = subprocess.run([sys.executable, "-m", "planet", "evaluate", "missing.pt"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and out.stderr.startswith("error: missing.pt") and "Traceback" not in out.stderr


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


def test_a_train_stopped_mid_run_closes_its_mlflow_run_and_the_resume_reopens_it(tmp_path):
    """SIGTERM in the second iteration (the first one checkpointed): the run ends FAILED with an end
    time, not RUNNING; `dvc repro` then continues the same run to FINISHED."""
    project = make_project(tmp_path / "stopped", iterations(3))
    run(["dvc", "repro", "seed"], project)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    train = subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=project, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for line in train.stdout:  # printed once iteration 2 is logged; iteration 1's checkpoint is written
        if line.startswith("it    2 |"):
            train.send_signal(signal.SIGTERM)
            break
    _, stderr = train.communicate(timeout=300)
    assert train.returncode != 0 and "interrupted" in stderr and "Traceback" not in stderr
    client = mlflow_client(project)
    run_id = json.loads((project / "runs/train.json").read_text())["run_id"]
    stopped = client.get_run(run_id).info
    assert stopped.status == "FAILED" and stopped.end_time
    run(["dvc", "repro"], project)
    assert json.loads((project / "runs/train.json").read_text())["run_id"] == run_id
    resumed = client.get_run(run_id).info
    assert resumed.status == "FINISHED" and resumed.end_time >= stopped.end_time
