"""planet/run.py: a whole training run without DVC (`planet.train`, `planet train`): trains, resumes,
extends, and keeps a run aside when its settings or the engine's code change."""
from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
import yaml

import planet
from planet.config import Config, EnvConfig, RuntimeConfig, TrainConfig
from planet.identity import ENGINE_DIR

ROOT = Path(__file__).resolve().parent.parent


def tiny(tiny_model_cfg, iterations: int, **train) -> Config:
    return Config(env=EnvConfig(id="PlanetCounter-v0", image_size=16, action_repeat=1), model=tiny_model_cfg,
                  train=TrainConfig(iterations=iterations, steps_per_iteration=3, batch_size=2, seq_len=4,
                                    checkpoint_every=1, keep_checkpoints=2, **train),
                  runtime=RuntimeConfig(precision="fp32", compile=False, threads=1))


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def assert_same_model(a: Path, b: Path) -> None:
    first, second = weights(a), weights(b)
    assert [k for k in first if not torch.equal(first[k], second[k])] == []


def test_a_run_extended_and_resumed_equals_one_run_straight_through(tiny_model_cfg, tmp_path):
    said = []
    straight = planet.train(tiny(tiny_model_cfg, 3), tmp_path / "straight", say=said.append)
    assert [p.name for p in sorted((tmp_path / "straight").iterdir())] == [
        "checkpoints", "model.pt", "replay", "seed", "timing.csv", "train.csv"]
    assert said[0] == f"collecting 5 seed episodes with random actions into {tmp_path / 'straight/seed'}/"
    assert said[-1].startswith("done: 3 iterations")

    planet.train(tiny(tiny_model_cfg, 2), tmp_path / "extended", say=said.append)
    said.clear()
    extended = planet.train(tiny(tiny_model_cfg, 3), tmp_path / "extended", say=said.append)
    assert said[0] == "resuming after iteration 2 (7 episodes)"  # no second seed collection
    assert (tmp_path / "extended/train.csv").read_text() == (tmp_path / "straight/train.csv").read_text()
    assert_same_model(extended, straight)

    said.clear()  # run again when finished: nothing to train, the same model
    planet.train(tiny(tiny_model_cfg, 3), tmp_path / "extended", say=said.append)
    assert said[0] == "resuming after iteration 3 (8 episodes)" and said[1].startswith("done: 3 iterations")
    assert_same_model(extended, straight)


def test_changed_settings_keep_the_run_aside_and_changing_them_back_resumes_it(tiny_model_cfg, tmp_path):
    said = []
    planet.train(tiny(tiny_model_cfg, 2), tmp_path, say=said.append)
    changed = tiny(tiny_model_cfg, 2, lr=5e-4)
    said.clear()
    planet.train(changed, tmp_path, say=said.append)
    (kept_line,) = [line for line in said if "changed since" in line]
    assert kept_line.startswith("train.lr changed since the run in ") and "starting a new run" in kept_line
    assert [p.name for p in (tmp_path / "kept").iterdir()] != []
    said.clear()
    planet.train(tiny(tiny_model_cfg, 2), tmp_path, say=said.append)
    assert any("taking it back" in line for line in said) and "resuming after iteration 2 (7 episodes)" in said


def test_other_seed_settings_collect_the_seed_episodes_again(tiny_model_cfg, tmp_path):
    said = []
    planet.train(tiny(tiny_model_cfg, 1), tmp_path, say=said.append)
    first = (tmp_path / "seed/episode_000000.npz").read_bytes()
    other = dataclasses.replace(tiny(tiny_model_cfg, 1), seed=1)
    said.clear()
    planet.train(other, tmp_path, say=said.append)
    assert said[0].startswith("collecting") and (tmp_path / "seed/episode_000000.npz").read_bytes() != first
    assert any("kept it in" in line for line in said)


def cli(*args: str, cwd: Path, code: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m planet ...`, from `code` (a copy of the package's parent folder) when given."""
    env = {**os.environ, "PYTHONPATH": f"{code or ROOT}{os.pathsep}{ROOT / 'tests'}"}
    # The toy env is named by a module of the user's folder that registers it, as their own env would be.
    return subprocess.run([sys.executable, "-m", "planet", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def params_file(path: Path, tiny_model_cfg, iterations: int) -> Path:
    (path.parent / "counter_env.py").write_text("import toy_env\n\ntoy_env.register()\n")
    raw = dataclasses.asdict(tiny(tiny_model_cfg, iterations))
    raw["env"]["id"] = "counter_env:PlanetCounter-v0"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_planet_train_from_the_command_line(tiny_model_cfg, tmp_path):
    params = params_file(tmp_path / "mine.yaml", tiny_model_cfg, 2)
    out = cli("train", str(params), "--out", "run", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "it    2 |" in out.stdout
    assert out.stdout.splitlines()[-1] == "done: 2 iterations, 84 env steps; model in run/model.pt"
    evaluated = cli("evaluate", "run/model.pt", "--episodes", "1", "--video", "eval.mp4", cwd=tmp_path)
    assert evaluated.returncode == 0 and evaluated.stdout.startswith("return "), evaluated.stderr

    bad = cli("train", "nosuch.yaml", "--out", "run", cwd=tmp_path)
    assert (bad.returncode, bad.stderr) == (2, "error: nosuch.yaml: not found\n")
    params.write_text(params.read_text().replace("lr: 0.001", "lr: -1"))
    bad = cli("train", str(params), "--out", "run", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: train.lr: must be a positive number")


def test_an_edit_to_the_training_loop_starts_a_new_run_and_keeps_the_old_one(tiny_model_cfg, tmp_path):
    code = tmp_path / "code"
    shutil.copytree(ENGINE_DIR, code / "planet", ignore=shutil.ignore_patterns("__pycache__"))
    params = params_file(tmp_path / "mine.yaml", tiny_model_cfg, 1)
    first = cli("train", str(params), "--out", "run", cwd=tmp_path, code=code)
    assert first.returncode == 0, first.stderr
    again = cli("train", str(params), "--out", "run", cwd=tmp_path, code=code)
    assert "resuming after iteration 1" in again.stdout, again.stderr

    loop = code / "planet/run.py"  # the same arithmetic, other code: the run must not mix the two
    assert loop.read_text().count("progress.iteration += 1") == 1
    loop.write_text(loop.read_text().replace("progress.iteration += 1", "progress.iteration = progress.iteration + 1"))
    edited = cli("train", str(params), "--out", "run", cwd=tmp_path, code=code)
    assert edited.returncode == 0, edited.stderr
    assert "engine code or seed episodes changed since the run in run/checkpoints/" in edited.stdout, edited.stdout
    assert "resuming" not in edited.stdout
    assert len(list((tmp_path / "run/kept").iterdir())) == 1
