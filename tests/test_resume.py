"""Kill-and-resume, extended runs and changed settings, on real DVC with tiny params: a resumed or
extended run equals the run that went straight through, to the last bit of every weight."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_pipeline import assert_same_weights, make_project, mlflow_client, run, tiny_params

from planet.fileio import CRASH_ENV, TEMP_GLOB

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
TRAIN_OUTPUTS = ["plots/train.csv", "metrics/train.json", "models/model.pt"]


def assert_same_results(expected: Path, actual: Path) -> None:
    for name in RESULTS:  # byte for byte: curves, losses, returns, dream errors
        assert (expected / name).read_bytes() == (actual / name).read_bytes(), name
    assert_same_weights(expected, actual)  # the curves are rounded to 6 digits; the weights are not


@pytest.fixture(scope="module")
def six_iterations(tmp_path_factory):
    """An uninterrupted six-iteration run: the reference for resumed and extended runs."""
    path = make_project(tmp_path_factory.mktemp("six"), iterations(6))
    run(["dvc", "repro"], path)
    return path


def test_a_resume_in_the_presets_runtime_equals_an_uninterrupted_run(tmp_path):
    """bf16 autocast and the compiled rollout, one thread: a run stopped after its 2nd iteration and
    continued to 4 equals the run that went to 4 at once, to the last bit of every weight. (State the
    checkpoint missed has shown by the second iteration after a resume.)"""
    whole = make_project(tmp_path / "whole", iterations(4, PRESET_RUNTIME))
    run(["dvc", "repro", "train"], whole)
    resumed = make_project(tmp_path / "resumed", iterations(2, PRESET_RUNTIME))
    run(["dvc", "repro", "train"], resumed)
    params = yaml.safe_load((resumed / "params.yaml").read_text())
    params["train"]["iterations"] = 4
    (resumed / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert "resuming after iteration 2" in run(["dvc", "repro", "train"], resumed).stdout
    assert (whole / "plots/train.csv").read_text() == (resumed / "plots/train.csv").read_text()
    assert_same_weights(whole, resumed)


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
    run(["dvc", "repro", "train"], project)
    first = {name: (project / name).read_bytes() for name in TRAIN_OUTPUTS}
    checkpoints = sorted(p.name for p in (project / "checkpoints").iterdir())
    params_path = project / "params.yaml"
    original = params_path.read_text()
    params_path.write_text(original.replace("lr: 0.001", "lr: 0.002"))
    out = run(["dvc", "repro", "train"], project)
    kept_line = [line for line in out.stdout.splitlines() if "kept it in" in line]
    assert len(kept_line) == 1 and kept_line[0].startswith("train: train.lr changed since the run in checkpoints/")
    listing = run([sys.executable, "-m", "experiments.runs"], project).stdout
    assert "train.lr" in listing and "Pendulum-v1" in listing
    params_path.write_text(original)
    out = run(["dvc", "repro", "train"], project)
    assert "taking it back" in out.stdout and "resuming after iteration 2" in out.stdout
    assert {name: (project / name).read_bytes() for name in first} == first
    assert sorted(p.name for p in (project / "checkpoints").iterdir()) == checkpoints
    # The second run (lr 0.002) is kept now; removing it by id frees its folder.
    (kept,) = [p.name for p in (project / ".planet/runs").iterdir()]
    out = run([sys.executable, "-m", "experiments.runs", "--remove", kept], project)
    assert f"removed kept run {kept}" in out.stdout and not (project / ".planet/runs" / kept).exists()
    bad = run([sys.executable, "-m", "experiments.runs", "--remove", "nosuch"], project, check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("error: no kept run nosuch")


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
