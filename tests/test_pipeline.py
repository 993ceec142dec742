"""End to end on real DVC, a real git repo and a real MLflow SQLite store, with tiny params.

The project is copied into a temp git repo; `dvc repro` runs every stage; then one evaluate param
changes and only evaluate may rerun; then a second `dvc repro` must do nothing. Later: a queued
sweep, the MLflow server, and `git checkout` + `dvc checkout` back to the first run after a second."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import imageio.v3 as iio
import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
COPY = ["planet", "stages", "experiments", "dvc.yaml", "params.yaml", ".gitignore", ".dvcignore", ".dvc/config",
        ".dvc/.gitignore"]
ITERATIONS = 3


def tiny_params(params: dict) -> dict:
    params["env"].update(image_size=32, action_repeat=4)  # Pendulum: 50 agent steps per episode
    params["data"]["seed_episodes"] = 2
    params["model"].update(belief_size=32, state_size=8, embed_size=64, hidden_size=32, reward_hidden_size=32,
                           cnn_depth=8)
    params["train"].update(iterations=ITERATIONS, steps_per_iteration=3, batch_size=4, seq_len=8, checkpoint_every=1,
                           keep_checkpoints=2)
    params["planner"].update(candidates=32, top_k=4, horizon=4, iterations=2)
    params["evaluate"]["episodes"] = 2
    params["dream"].update(episodes=2, context_frames=3, dream_steps=10)
    # Compiling costs seconds per stage process; test_planner covers the compiled planner.
    params["runtime"].update(device="cpu", precision="fp32", compile=False)
    return params


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: int = 900,
        extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)  # the project's own store, unless `extra_env` names one
    env.update(extra_env or {})
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"{cmd} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def commit_all(project: Path, message: str) -> str:
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], project)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], project)
    return run(["git", "rev-parse", "HEAD"], project).stdout.strip()


def make_project(path: Path, edit=tiny_params) -> Path:
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, path / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, path / name)
    params = yaml.safe_load((path / "params.yaml").read_text())
    (path / "params.yaml").write_text(yaml.safe_dump(edit(params), sort_keys=False))
    run(["git", "init", "-q"], path)
    commit_all(path, "init")
    return path


def assert_same_weights(expected: Path, actual: Path) -> None:
    """The two folders' `models/model.pt` hold the same weights, to the last bit of every tensor."""
    weights = [torch.load(folder / "models/model.pt", weights_only=True)["model"] for folder in (expected, actual)]
    assert [k for k in weights[0] if not torch.equal(weights[0][k], weights[1][k])] == []


def ran_stages(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def mlflow_client(project: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


@pytest.fixture(scope="module")
def first_repro(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    path = make_project(tmp_path_factory.mktemp("pipeline"))
    return path, run(["dvc", "repro"], path)


@pytest.fixture(scope="module")
def project(first_repro):
    path, out = first_repro
    assert ran_stages(out.stdout) == ["check", "seed", "train", "evaluate", "dream"]
    return path


def test_dvc_repro_prints_the_stages_lines_and_no_library_warnings(first_repro):
    _, out = first_repro
    assert "Warning" not in out.stdout + out.stderr, out.stdout + out.stderr


def test_every_output_is_there(project):
    assert len(list((project / "data/seed").glob("episode_*.npz"))) == 2
    assert len(list((project / "data/replay").glob("episode_*.npz"))) == 2 + ITERATIONS
    assert [p.name for p in sorted((project / "checkpoints").glob("*.pt"))] == ["checkpoint_000002.pt",
                                                                                 "checkpoint_000003.pt"]
    assert (project / "models/model.pt").stat().st_size > 0
    train = json.loads((project / "metrics/train.json").read_text())
    assert train["iterations"] == ITERATIONS and train["env_steps"] == 200 * (2 + ITERATIONS)
    evaluation = json.loads((project / "metrics/eval.json").read_text())
    assert len(evaluation["returns"]) == 2 and {"return_mean", "return_std"} <= set(evaluation)
    assert set(json.loads((project / "metrics/dream.json").read_text())) == {
        "mse_h1", "mse_h5", "mse_h10", "return_error_h1", "return_error_h5", "return_error_h10"}
    curves = (project / "plots/train.csv").read_text().splitlines()
    assert len(curves) == 1 + ITERATIONS and "collect_return" in curves[0] and "wall_time_s" not in curves[0]
    timing = (project / "plots/timing.csv").read_text().splitlines()  # apart: never the same twice
    assert len(timing) == 1 + ITERATIONS and timing[0] == "iteration,env_steps,grad_steps_per_s,wall_time_s"
    frames = [f for f in iio.imiter(project / "videos/eval.mp4")]
    assert len(frames) == 51 and frames[0].shape == (128, 128, 3)  # o_0..o_50, 32 px upscaled x4
    assert iio.imread(project / "plots/eval.gif", index=0).shape[:2] == (128, 128)  # big enough to see
    for i in range(2):
        dream_frames = list(iio.imiter(project / f"dream/videos/dream_{i}.mp4"))
        assert len(dream_frames) == 13 and (project / f"dream/gifs/dream_{i}.gif").stat().st_size > 0
    for png in ("dream/error.png", "plots/train.png"):
        assert (project / png).read_bytes()[:4] == b"\x89PNG"
    assert len((project / "plots/dream_error.csv").read_text().splitlines()) == 1 + 2 * 13


def test_dvc_metrics_and_plots_show(project):
    metrics = run(["dvc", "metrics", "show", "--json"], project).stdout
    assert "return_mean" in metrics and "mse_h1" in metrics
    run(["dvc", "plots", "show", "-o", str(project / "dvc_plots")], project)
    assert (project / "dvc_plots/index.html").exists()


def test_mlflow_run_holds_everything(project):
    client = mlflow_client(project)
    run_id = json.loads((project / "runs/train.json").read_text())["run_id"]
    mlrun = client.get_run(run_id)
    params = yaml.safe_load((project / "params.yaml").read_text())
    flat_count = sum(len(v) if isinstance(v, dict) else 1 for v in params.values())
    assert len(mlrun.data.params) == flat_count and mlrun.data.params["train.lr"] == "0.001"
    assert {"git.commit", "git.dirty", "planet.input_digest", "planet.device", "torch.version"} <= set(mlrun.data.tags)
    for key in ("total", "recon", "reward", "kl", "overshoot", "collect_return", "grad_steps_per_s", "wall_time_s"):
        history = client.get_metric_history(run_id, key)
        assert [m.step for m in history] == [400 + 200 * i for i in range(1, ITERATIONS + 1)], key
    assert "eval/return_mean" in mlrun.data.metrics and "dream/mse_h1" in mlrun.data.metrics
    artifacts = {a.path for folder in ("", "evaluate", "dream", "dream/videos", "plots")
                 for a in client.list_artifacts(run_id, folder)}
    assert {"params.yaml", "evaluate/eval.mp4", "evaluate/eval.gif", "dream/error.png", "dream/videos/dream_0.mp4",
            "plots/train.png"} <= artifacts


def test_changing_an_evaluate_param_reruns_only_evaluate_then_nothing(project):
    params_path = project / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["evaluate"]["episodes"] = 3
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro"], project)
    assert ran_stages(out.stdout) == ["check", "evaluate"]  # check always vets a params change
    assert len(json.loads((project / "metrics/eval.json").read_text())["returns"]) == 3
    client = mlflow_client(project)
    train_id = json.loads((project / "runs/train.json").read_text())["run_id"]
    runs = client.search_runs([client.get_run(train_id).info.experiment_id])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == train_id]
    assert len(children) == 1 and children[0].data.params["evaluate.episodes"] == "3"
    assert "eval/return_mean" in children[0].data.metrics
    assert ran_stages(run(["dvc", "repro"], project).stdout) == []  # a no-op


def test_every_mlflow_run_the_pipeline_opened_has_ended(project):
    client = mlflow_client(project)
    train_id = json.loads((project / "runs/train.json").read_text())["run_id"]
    runs = client.search_runs([client.get_run(train_id).info.experiment_id])
    assert len(runs) >= 2  # the training run and the evaluate child of the test before
    assert all(r.info.status == "FINISHED" and r.info.end_time for r in runs), [(r.info.run_name, r.info.status)
                                                                              for r in runs]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(port: int) -> None:
    """Poll the MLflow server on `port` until its /health answers (up to a minute)."""
    for _ in range(120):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the MLflow server on port {port} did not start")


def test_mlflow_server_serves_the_runs(project):
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
                               f"sqlite:///{project / 'mlflow.db'}", "--host", "127.0.0.1", "--port", str(port),
                               "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(port)
        experiments = json.load(urllib.request.urlopen(f"{base}/api/2.0/mlflow/experiments/search?max_results=10"))
        exp_id = next(e["experiment_id"] for e in experiments["experiments"] if e["name"] == "planet")
        request = urllib.request.Request(f"{base}/api/2.0/mlflow/runs/search", method="POST",
                                         data=json.dumps({"experiment_ids": [exp_id]}).encode(),
                                         headers={"Content-Type": "application/json"})
        runs = json.load(urllib.request.urlopen(request))["runs"]
        train_id = json.loads((project / "runs/train.json").read_text())["run_id"]
        assert train_id in {r["info"]["run_id"] for r in runs}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_the_trained_model_is_an_mlflow_model_that_planet_evaluates_from_anywhere(project, tmp_path, monkeypatch):
    client = mlflow_client(project)
    train_id = json.loads((project / "runs/train.json").read_text())["run_id"]
    experiment_id = client.get_run(train_id).info.experiment_id
    models = client.search_logged_models(experiment_ids=[experiment_id])  # the experiment's Models tab
    (model,) = [m for m in models if m.source_run_id == train_id]
    assert model.name == "model" and model.tags["env.id"] == "Pendulum-v1"
    assert model.params["model.belief_size"] == "32" and model.params["seed"] == "0"  # the resolved config
    import mlflow

    store = f"sqlite:///{project / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    version = mlflow.register_model(model.model_uri, "pendulum-tiny")  # what "Register model" in the UI does
    env = {"MLFLOW_TRACKING_URI": store}
    for uri in (f"runs:/{train_id}/model", f"models:/pendulum-tiny/{version.version}"):
        out = run(["planet", "evaluate", uri, "--episodes", "1", "--video", "eval.mp4"], tmp_path, extra_env=env)
        assert out.stdout.startswith("return ") and "over 1 episodes of Pendulum-v1" in out.stdout, out.stderr
    for unknown in ("runs:/0123456789abcdef/model", "models:/no-such-model/1"):
        missing = run(["planet", "evaluate", unknown], tmp_path, check=False, extra_env=env)
        assert missing.returncode == 2 and missing.stderr.startswith(f"error: {unknown}: "), missing.stderr
        assert len(missing.stderr.strip().splitlines()) == 1


def test_queued_sweep_runs_and_logs_to_the_project_store(project):
    # `train` and what it needs: evaluate and dream would add minutes and nothing to what is tested
    run(["dvc", "exp", "run", "--queue", "train", "-S", "train.lr=0.0003"], project)
    run(["dvc", "exp", "run", "--queue", "train", "-S", "train.lr=0.0002"], project)
    run(["dvc", "queue", "start", "-j", "2"], project)
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], project).stdout
        if "Running" not in status and "Queued" not in status:
            break
        time.sleep(3)
    assert status.count("Success") == 2, status
    table = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    assert "0.0002" in json.dumps(table) and "return_mean" in json.dumps(table)
    client = mlflow_client(project)  # queued runs ran in .dvc/tmp/exps/ but logged here
    experiment = client.get_experiment_by_name("planet").experiment_id
    swept = {r.data.params["train.lr"] for r in client.search_runs([experiment]) if "dvc.exp_name" in r.data.tags}
    assert swept == {"0.0003", "0.0002"}


def digests(project: Path, *patterns: str) -> dict[str, str]:
    return {str(p.relative_to(project)): hashlib.sha256(p.read_bytes()).hexdigest()
            for pattern in patterns for p in sorted(project.glob(pattern))}


def test_git_checkout_and_dvc_checkout_restore_a_runs_data_and_model(project):
    """The README's promise: `git checkout <rev> && dvc checkout` brings back that run's episodes and model."""
    outputs = ("models/model.pt", "data/replay/*.npz", "checkpoints/*.pt", "metrics/*.json")
    first = commit_all(project, "first run")
    before = digests(project, *outputs)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["lr"] = 0.0005
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro"], project)
    assert ran_stages(out.stdout) == ["check", "train", "evaluate", "dream"]
    assert "train: train.lr changed since the run in checkpoints/" in out.stdout  # told, not silent
    commit_all(project, "second run")
    assert digests(project, "models/model.pt")["models/model.pt"] != before["models/model.pt"]
    run(["git", "checkout", "-q", first], project)
    run(["dvc", "checkout"], project)
    assert digests(project, *outputs) == before
    assert "changed" not in run(["dvc", "status"], project).stdout


def test_make_ui_announces_the_training_runs_with_what_differs(project):
    """`make ui` saves the run list's view (the params that differ, the returns) and prints its address."""
    from experiments import tracking

    port = free_port()
    ui = subprocess.Popen([sys.executable, "-m", "experiments.ui"], cwd=project, stdout=subprocess.PIPE, text=True,
                          env={**os.environ, "MLFLOW_UI_PORT": str(port), "PYTHONPATH": str(project)},
                          start_new_session=True)
    try:
        announced = ui.stdout.readline()
        wait_until_serving(port)
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)
    client = mlflow_client(project)
    train_id = json.loads((project / "runs/train.json").read_text())["run_id"]
    experiment_id = client.get_run(train_id).info.experiment_id
    assert (f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs"
            "?viewStateShareKey=planet-runs&workflowType=machine_learning") in announced
    view = json.loads(client.get_experiment(experiment_id).tags["mlflow.sharedViewState.planet-runs"])
    # The params that differ between training runs; evaluate's child runs are not training runs.
    training = [r for r in client.search_runs([experiment_id]) if "mlflow.parentRunId" not in r.data.tags]
    differing = sorted(k for k in training[0].data.params
                       if k not in ("env.id", "seed") and len({r.data.params.get(k) for r in training}) > 1)
    assert view["selectedColumns"] == [*(f"params.`{k}`" for k in ["env.id", "seed", *differing][:10]),
                                       *(f"metrics.`{k}`" for k in tracking.RUN_LIST_METRICS)]
