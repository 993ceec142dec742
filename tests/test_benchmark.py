"""`make benchmark` on real DVC, git and Ray with a tiny task: selection, results, and a trial stopped
mid-run that continues from its checkpoint to the same curves and weights as an uninterrupted one."""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_pipeline import assert_same_weights, commit_all, make_project, mlflow_client

from experiments.benchmark import (
    PGID,
    TASKS,
    BenchmarkError,
    Trial,
    _logged,
    parse_selection,
    progress_line,
    stop_leftover,
)

ROOT = Path(__file__).resolve().parent.parent


def test_the_default_selection_is_six_tasks_by_three_seeds():
    trials = parse_selection([], ROOT / "profiles")
    assert len(trials) == 18 and {t.task for t in trials} == set(TASKS)
    assert Trial("cup-catch", "2").name == "dmc-cup-catch-seed2"
    assert [t.name for t in parse_selection(["task=cheetah-run", "seed=1,2"], ROOT / "profiles")] == [
        "dmc-cheetah-run-seed1", "dmc-cheetah-run-seed2"]


@pytest.mark.parametrize("setting, message", [("task=cheetah", "task 'cheetah' has no profiles/cheetah.args"),
                                              ("seed=one", "seed 'one': must be a non-negative integer"),
                                              ("env.id=x", "expected task=NAME")])
def test_a_bad_selection_is_one_line(setting, message):
    with pytest.raises(BenchmarkError, match=message):
        parse_selection([setting], ROOT / "profiles")


def test_progress_names_the_iteration_and_the_time_left(tmp_path):
    (tmp_path / "plots").mkdir()
    (tmp_path / "params.yaml").write_text("train:\n  iterations: 10\n")
    (tmp_path / "plots/timing.csv").write_text("iteration,env_steps,grad_steps_per_s,wall_time_s\n"
                                               "1,100,1.0,60\n2,200,1.0,120\n3,300,1.0,180\n")
    line = progress_line(Trial("cheetah-run", "0"), tmp_path)
    # 7 iterations left at 60 s each, and 5% for evaluate and dream
    assert line == "cheetah-run seed 0: iteration 3/10, 3 min of training, about 0.1 h left"
    with (tmp_path / "plots/timing.csv").open("a") as timing:  # an iteration that spanned an hour's pause
        timing.write("4,400,1.0,3840\n")
    line = progress_line(Trial("cheetah-run", "0"), tmp_path)
    assert line == "cheetah-run seed 0: iteration 4/10, 64 min of training, about 0.1 h left"
    (tmp_path / "plots/timing.csv").unlink()  # as when DVC restarts the stage
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints/checkpoint_000005.pt").write_bytes(b"")
    line = progress_line(Trial("cheetah-run", "0"), tmp_path)
    assert line == "cheetah-run seed 0: continuing after iteration 5 of 10"


@contextmanager
def sigint(handler) -> Iterator[None]:
    """SIGINT handled by `handler` in this process meanwhile: a child started within inherits SIG_IGN as
    it is, and any other handler as the default."""
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_leftover_trial_stops_as_ctrl_c_stops_it_and_leaves_dvc_no_stale_lock(tmp_path):
    """A trial's `dvc repro` left by a killed driver is stopped the way Ctrl-C stops it: DVC waits for its
    stage to exit and releases its lock, so the continued trial starts without DVC's stale-lock warning."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=tmp_path, env=env, check=True)
    stage = ("import pathlib, time; pathlib.Path('started').touch(); time.sleep(120); "
             "pathlib.Path('out.txt').write_text('done')")
    (tmp_path / "dvc.yaml").write_text(f'stages:\n  wait:\n    cmd: python -c "{stage}"\n    outs: [out.txt]\n')
    log = (tmp_path / "repro.log").open("w")
    # SIGINT handled here, as the benchmark command handles it, so the child starts with the default
    # even where pytest itself runs in the background (SIGINT ignored, which a child would inherit).
    with sigint(signal.default_int_handler):
        repro = subprocess.Popen(["dvc", "repro"], cwd=tmp_path, env=env, start_new_session=True,
                                 stdout=log, stderr=subprocess.STDOUT)
    threading.Thread(target=repro.wait).start()  # reaped as its real parent would: no zombie to wait on
    (tmp_path / PGID).write_text(str(repro.pid))
    deadline = time.monotonic() + 120
    while not (tmp_path / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (tmp_path / "started").exists()
    stop_leftover(tmp_path)
    out = (tmp_path / "repro.log").read_text()
    assert repro.wait(timeout=5) == 255 and "failed to reproduce 'wait'" in out, out  # the stage, not DVC, ended
    locks = json.loads((tmp_path / ".dvc/tmp/rwlock").read_text())
    assert not any(locks.values()), locks  # with SIGTERM DVC dies holding `out.txt`


def test_a_trial_gets_sigint_unblocked_though_the_thread_starting_it_blocks_it(tmp_path):
    """Ray's worker threads block SIGINT, and a child inherits its thread's mask: a trial started there
    could not be stopped as Ctrl-C stops it."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        code = _logged(["grep", "SigBlk", "/proc/self/status"], tmp_path, dict(os.environ), tmp_path / "log")
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    mask = int((tmp_path / "log").read_text().split()[-1], 16)
    assert code == 0 and not mask & 1 << (signal.SIGINT - 1), hex(mask)


def benchmark(project: Path, folder: Path) -> subprocess.Popen:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    # A token of the test's own: otherwise the local cluster writes one to ~/.ray/auth_token, and every
    # later `ray start` on this machine turns token authentication on.
    env["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    # Started as `nohup make benchmark &` starts it: SIGINT ignored, as every process below inherits it.
    with sigint(signal.SIG_IGN):
        return subprocess.Popen([sys.executable, "-m", "experiments.benchmark", "-S", "task=tiny", "-S", "seed=0",
                                 "--dir", str(folder), "--every", "2"], cwd=project, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def tiny_task_project(path: Path) -> Path:
    project = make_project(path)
    (project / "profiles").mkdir()
    (project / "profiles/tiny.args").write_text("-S train.iterations=4 -S evaluate.episodes=1\n")
    commit_all(project, "a tiny task")
    return project


def assert_one_finished_mlflow_run(project: Path, copy: Path) -> None:
    """The trial logged to the project's MLflow store, where `make ui` shows it: one training run named
    after the trial, its whole curve, its artifacts in the project's `mlartifacts/`; none in the copy."""
    client = mlflow_client(project)
    runs = client.search_runs([client.get_experiment_by_name("planet").experiment_id],
                              "tags.`dvc.exp_name` = 'dmc-tiny-seed0'")
    train = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(train) == 1 and train[0].info.run_name.startswith("dmc-tiny-seed0 ("), [r.info.run_name for r in runs]
    assert train[0].info.status == "FINISHED" and "eval/return_mean" in train[0].data.metrics
    # An iteration cut short after logging and redone after the resume logs its step again (same value).
    steps = sorted({m.step for m in client.get_metric_history(train[0].info.run_id, "collect_return")})
    assert steps == [400 + 200 * i for i in range(1, 5)]  # 2 seed episodes, then 4 iterations of 200 steps
    assert train[0].info.artifact_uri.startswith((project / "mlartifacts").as_uri())
    assert not (copy / "mlflow.db").exists() and not (copy / "mlartifacts").exists()


def test_a_stopped_trial_continues_to_the_uninterrupted_result(tmp_path):
    whole = tiny_task_project(tmp_path / "whole")
    out, _ = benchmark(whole, tmp_path / "whole-trials").communicate(timeout=900)
    assert "dmc-tiny-seed0: finished, results in results/dmc-tiny-seed0/" in out, out
    assert "`python scripts/benchmark_table.py` puts the table in the README" in out
    results = whole / "results/dmc-tiny-seed0"
    assert {p.name for p in results.iterdir()} >= {"params.yaml", "train.csv", "timing.csv", "train.json",
                                                     "eval.json", "train.png", "eval.gif", "dream_0.gif", "run.json"}
    assert_one_finished_mlflow_run(whole, tmp_path / "whole-trials/dmc-tiny-seed0")
    again, _ = benchmark(whole, tmp_path / "whole-trials").communicate(timeout=300)
    assert "dmc-tiny-seed0: in results/, skipped" in again and "benchmark_table" not in again

    stopped = tiny_task_project(tmp_path / "stopped")
    trials = tmp_path / "stopped-trials"
    driver = benchmark(stopped, trials)
    checkpoint = trials / "dmc-tiny-seed0/checkpoints/checkpoint_000002.pt"
    deadline = time.monotonic() + 600
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert checkpoint.exists()
    pgid = int((trials / "dmc-tiny-seed0/.benchmark-pgid").read_text())
    driver.send_signal(signal.SIGTERM)
    out, _ = driver.communicate(timeout=300)
    assert driver.returncode == 2 and "interrupted; run the same command again" in out, out
    with pytest.raises(ProcessLookupError):  # the trial's processes stopped with the driver
        os.killpg(pgid, 0)
    assert not (stopped / "results/dmc-tiny-seed0").exists()

    out, _ = benchmark(stopped, trials).communicate(timeout=900)
    assert "finished" in out, out
    log = (trials / "dmc-tiny-seed0.log").read_text()
    assert "train: resuming after iteration" in log and log.count("Running stage 'seed'") == 1
    assert "Traceback" not in log and "had been killed" not in log, log  # stopped as by Ctrl-C: no stale DVC lock
    resumed = stopped / "results/dmc-tiny-seed0"
    assert (resumed / "train.csv").read_text() == (results / "train.csv").read_text()
    assert_one_finished_mlflow_run(stopped, trials / "dmc-tiny-seed0")  # the stopped run went on
    assert_same_weights(tmp_path / "whole-trials/dmc-tiny-seed0", trials / "dmc-tiny-seed0")
