"""Bad params, kill-and-resume and determinism, on real DVC with tiny params."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_pipeline import make_project, mlflow_client, ran_stages, run, tiny_params

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
        started = time.monotonic()
        out = run(["dvc", "repro"], done_project, check=False)
        elapsed = time.monotonic() - started
    finally:
        params_path.write_text(original)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "Traceback" not in text
    assert message in text, text
    assert elapsed < 30
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


def kill_during_train(project: Path, after_checkpoint: str) -> None:
    """Start `dvc repro`, SIGKILL its whole process group once `after_checkpoint` exists."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.Popen(["dvc", "repro"], cwd=project, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    target = project / "checkpoints" / after_checkpoint
    deadline = time.monotonic() + 240
    while not target.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # now inside the next iteration's gradient steps or collection
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert target.exists()


def four_iterations(params):
    params = tiny_params(params)
    params["train"]["iterations"] = 4
    return params


def test_runs_are_deterministic_and_a_killed_train_resumes_to_the_same_result(tmp_path):
    metrics = ["metrics/train.json", "metrics/eval.json", "metrics/dream.json"]
    first = make_project(tmp_path / "a", four_iterations)
    second = make_project(tmp_path / "b", four_iterations)
    killed = make_project(tmp_path / "c", four_iterations)
    run(["dvc", "repro"], first)
    run(["dvc", "repro"], second)
    for name in metrics:  # two fresh runs, byte for byte
        assert (first / name).read_bytes() == (second / name).read_bytes(), name

    # Killed three times: half-way through writing an episode, half-way through writing a checkpoint,
    # and during the gradient steps after a checkpoint; each rerun resumes from the newest good one.
    for half_written in ("data/replay/episode_000003.npz", "checkpoints/checkpoint_000003.pt"):
        out = run(["dvc", "repro"], killed, check=False, extra_env={CRASH_ENV: half_written})
        assert out.returncode != 0
        folder, name = half_written.rsplit("/", 1)
        assert not (killed / half_written).exists()
        assert [p.name.startswith(f".{name}.") for p in (killed / folder).glob(TEMP_GLOB)] == [True]
    kill_during_train(killed, "checkpoint_000003.pt")
    # A comment or docstring edit in the engine reruns the stage (DVC hashes files) but keeps the run.
    device = killed / "planet/device.py"
    device.write_text("# an edited comment\n" + device.read_text().replace('"""Median', '"""Reworded. Median', 1))
    out = run(["dvc", "repro"], killed)
    for folder in ("checkpoints", "data/replay"):  # stale temp files from the kill are swept
        assert not list((killed / folder).glob(".*.tmp*"))
    assert "resuming after iteration" in out.stdout + out.stderr
    assert ran_stages(out.stdout)[:1] in (["train"], ["check"])
    for name in metrics:
        assert (first / name).read_bytes() == (killed / name).read_bytes(), name
    columns = [(p / "plots/train.csv").read_text().splitlines()[0] for p in (first, killed)]
    assert columns[0] == columns[1]
    client = mlflow_client(killed)
    train_id = json.loads((killed / "runs/train.json").read_text())["run_id"]
    experiment = client.get_run(train_id).info.experiment_id
    top_level = [r for r in client.search_runs([experiment]) if "mlflow.parentRunId" not in r.data.tags]
    assert [r.info.run_id for r in top_level] == [train_id]  # the resumed train continued its run
    steps = sorted({m.step for m in client.get_metric_history(train_id, "recon")})
    assert steps == [400 + 200 * i for i in range(1, 5)]


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
