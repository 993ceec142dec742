"""The helper scripts behind the experiment record (docs/record/experiments.md)."""
import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_oracles_dynamics_are_pendulums():
    """The ceiling is only a ceiling if the oracle's equations are Pendulum-v1's own."""
    oracle = load_script("pendulum_oracle")
    env = gym.make("Pendulum-v1")
    env.reset(seed=3)
    angle, speed = env.unwrapped.state
    rng = np.random.default_rng(0)
    for torque in rng.uniform(-2.5, 2.5, 60):  # beyond the bounds too: both clip
        angle, speed, reward = oracle.step(angle, speed, torque)
        _, env_reward, *_ = env.step(np.array([torque], dtype=np.float32))
        assert np.allclose([angle, speed], env.unwrapped.state, atol=1e-5)
        assert np.isclose(reward, env_reward, atol=1e-4)


def test_compare_runs_plots_and_tabulates_the_committed_results(tmp_path):
    runs = [ROOT / "results" / "v2-seed0", ROOT / "results" / "v2-seed1"]
    out = subprocess.run([sys.executable, "scripts/compare_runs.py", *map(str, runs), "-o", str(tmp_path / "c.png")],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = out.stdout.splitlines()[2:]
    assert len(rows) == len(runs), out.stdout  # zip below would pass over a missing row
    for run, row in zip(runs, rows):
        evaluation = json.loads((run / "eval.json").read_text())
        assert row.startswith(f"| {run.name} |") and f"{evaluation['return_mean']:.1f} +- " in row


def test_compare_runs_names_a_folder_that_is_not_a_run(tmp_path):
    out = subprocess.run([sys.executable, "scripts/compare_runs.py", str(tmp_path), "-o", str(tmp_path / "c.png")],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode != 0 and not (tmp_path / "c.png").exists()
    assert out.stderr.strip() == f"error: {tmp_path}: missing train.csv, eval.json, params.yaml"


def test_the_oracle_plans_with_the_engines_planner_on_the_true_dynamics():
    """Same CEM as `planet.planner` (not a copy): only the rollout step is the simulator. One greedy
    episode from a hanging start swings up: a random policy scores about -1200 here."""
    import torch

    from planet.config import PlannerConfig
    from planet.model import LatentState
    from planet.planner import Planner, shift_plan

    oracle = load_script("pendulum_oracle")
    rollout = oracle.true_dynamics(repeat=4)
    latent = LatentState(torch.tensor([[3.0, 0.5], [1.0, -2.0]], dtype=torch.float64), torch.zeros(2, 1))
    after, reward = rollout(None, latent, torch.tensor([[0.5], [-1.0]]), None)
    angle, speed, total = np.array([3.0, 1.0]), np.array([0.5, -2.0]), 0.0
    for _ in range(4):
        angle, speed, r = oracle.step(angle, speed, np.array([1.0, -2.0]))
        total += r
    assert np.allclose(after.belief.numpy(), np.stack([angle, speed], -1)) and np.allclose(reward.numpy(), total)

    planner = Planner(oracle.SimpleNamespace(action_size=1, cfg=oracle.SimpleNamespace(state_size=1)),
                      PlannerConfig(candidates=200, top_k=20, horizon=6, iterations=5),
                      step=rollout)
    angle, speed, ret, plan = np.pi, 0.0, 0.0, None
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        state = LatentState(torch.tensor([[angle, speed]], dtype=torch.float64), torch.zeros(1, 1))
        plan = planner.plan_sequence(state, generator, None if plan is None else shift_plan(plan))
        for _ in range(4):
            angle, speed, r = oracle.step(angle, speed, float(plan[0, 0, 0]) * 2.0)
            ret += r
    assert ret > -500


def fake_result(folder: Path, eval_mean: float, hours: float, steps: int = 100_000) -> None:
    folder.mkdir(parents=True)
    (folder / "train.csv").write_text("iteration,env_steps,collect_return\n1,6000,10.0\n2," f"{steps},40.0\n")
    (folder / "timing.csv").write_text(f"iteration,env_steps,grad_steps_per_s,wall_time_s\n1,6000,1,60\n2,{steps},1,"
                                       f"{hours * 3600}\n")
    (folder / "eval.json").write_text(json.dumps({"return_mean": eval_mean, "return_std": 1.0}))


def test_the_benchmark_table_and_figure_come_from_the_result_folders(tmp_path):
    table = load_script("benchmark_table")
    fake_result(tmp_path / "results/dmc-cheetah-run-seed0", 150.0, 2.0)
    fake_result(tmp_path / "results/dmc-cheetah-run-seed1", 250.0, 3.0)
    fake_result(tmp_path / "results/dmc-cartpole-swingup-seed2", 400.0, 1.5, steps=50_000)
    fake_result(tmp_path / "results/dmc-cup-catch-seed0", 100.0, 8.0)
    fake_result(tmp_path / "results/dmc-cup-catch-seed1", 300.0, 4.0)
    for seed, machine in ((0, "AMD EPYC (avx2, 2 cores)"),
                          (1, "Intel(R) Xeon(R) Processor @ 2.80GHz (avx512f, 2 cores)")):
        (tmp_path / f"results/dmc-cup-catch-seed{seed}/run.json").write_text(json.dumps({"machine": machine}))
    (tmp_path / "results/dmc-walker-walk-seed0").mkdir()  # started, no results yet: not counted
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{table.START}\nstale\n{table.END}\nrest\n")
    table.main(["--results", str(tmp_path / "results"), "--readme", str(readme), "--figure", str(tmp_path / "f.png")])
    rows = {line.split(" | ")[0].strip("| "): line for line in readme.read_text().splitlines() if line.startswith("| ")}
    # mean and sample std of 150 and 250; the published figures beside them
    assert rows["cheetah run"] == ("| cheetah run | **200.0** ± 70.7 | 150.0, 250.0 | 100,000 | 2.0-3.0 h | "
                                   "138 ± 88 | 165 ± 123 | 235 ± 137 |")
    assert rows["cartpole swingup"].startswith("| cartpole swingup | **400.0** (one seed) | 400.0 | 50,000 | 1.5 h |")
    assert rows["walker walk"].startswith("| walker walk | not run yet |")
    # seeds run on different machines: each machine's time, as the trial's run.json names it
    assert "| 8.0 h on AMD EPYC (avx2, 2 cores); 4.0 h on Intel Xeon @ 2.80GHz (avx512f, 2 cores) |" \
        in rows["ball_in_cup catch"]
    assert "stale" not in readme.read_text() and readme.read_text().endswith("rest\n")
    assert (tmp_path / "f.png").stat().st_size > 10_000


def test_the_readme_shows_the_table_the_committed_results_give(tmp_path):
    """The README's benchmark table is never typed: regenerated from results/, it comes out unchanged."""
    table = load_script("benchmark_table")
    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text())
    table.main(["--results", str(ROOT / "results"), "--readme", str(readme), "--figure", str(tmp_path / "f.png")])
    assert readme.read_text() == (ROOT / "README.md").read_text(), \
        "the README's benchmark table is not what results/ gives: run `python scripts/benchmark_table.py`"


def test_the_training_time_does_not_count_a_pause():
    table = load_script("benchmark_table")
    assert table.training_seconds([60, 120, 180, 240]) == 240
    # the third iteration spanned an hour's SIGSTOP: it counts as three median iterations
    assert table.training_seconds([60, 120, 3780, 3840]) == 60 + 60 + 180 + 60


def test_the_gpu_check_dry_run_measures_every_step_and_writes_its_report(tmp_path):
    """With --dry-run the gpu check runs its whole course on the CPU at tiny sizes: so it cannot rot."""
    out = subprocess.run([sys.executable, str(ROOT / "scripts/gpu_check.py"), "--out", str(tmp_path), "--dry-run"],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["dry_run"] and report["tests"]["passed"] >= 7 and report["tests"]["failed"] == 0
    assert {(r["precision"], r["compile"]) for r in report["bench"]} == {("fp32", False), ("bf16", False)}
    assert all(r["train_step_ms"] > 0 and r["plan_ms"] > 0 for r in report["bench"])
    phases = report["training"]
    assert set(phases["seconds_per_iteration"]) == {"train", "collect", "evaluate"}
    assert phases["env_steps_per_episode"] == 1000 and phases["projected_minutes_per_100k_env_steps"] > 0
    assert "min per 100k env steps" in (tmp_path / "gpu_check.md").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="refusing a CPU torch needs a machine without CUDA")
def test_the_gpu_check_refuses_a_torch_without_cuda_in_one_line(tmp_path):
    """Not a silent CPU dry run where a GPU measurement was asked for (the .venv's torch is the CPU build)."""
    out = subprocess.run([sys.executable, str(ROOT / "scripts/gpu_check.py"), "--out", str(tmp_path / "gpu")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("error: torch ") and "sees no CUDA device" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and not (tmp_path / "gpu").exists()


def test_the_slimmed_dm_control_wheel_keeps_every_module_and_a_matching_record(tmp_path):
    wheels = load_script("gpu_wheels")
    source = tmp_path / "dm_control-1.0-py3-none-any.whl"
    files = {"dm_control/suite/cartpole.xml": b"<mujoco/>", "dm_control/suite/dog_assets/dog.stl": b"x" * 1000,
             "dm_control/locomotion/walkers/ant.py": b"ANT = 1\n", "dm_control/locomotion/soccer/ball.png": b"png",
             "dm_control-1.0.dist-info/METADATA": b"Name: dm_control\n"}
    with zipfile.ZipFile(source, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
        wheel.writestr("dm_control-1.0.dist-info/RECORD", "stale\n")
    slim = tmp_path / "slim.whl"
    assert wheels.slim_wheel(source, slim) == 2
    with zipfile.ZipFile(slim) as wheel:
        names = set(wheel.namelist())
        record = [row.split(",") for row in wheel.read("dm_control-1.0.dist-info/RECORD").decode().splitlines()]
    assert names == {"dm_control/suite/cartpole.xml", "dm_control/locomotion/walkers/ant.py",
                     "dm_control-1.0.dist-info/METADATA", "dm_control-1.0.dist-info/RECORD"}
    assert {row[0] for row in record} == names
    assert [row for row in record if row[0] == "dm_control/locomotion/walkers/ant.py"][0][2] == "8"
