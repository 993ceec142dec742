"""`make gpu-check OUT=DIR`: the GPU path, measured in one command (about 8 minutes on one GPU).

    python scripts/gpu_check.py --out DIR [--dry-run]

1. the environment: Python, torch, CUDA, the GPU and its memory;
2. the engine's device-parametrised tests on CUDA (`pytest -m device -k cuda`);
3. one train step and one CEM plan (`planet.bench`'s timing) at the notebook's sizes and at the paper's
   full configuration (the paper network, cnn_depth 32, batch 50 x 50, CEM 1000/100/10, horizon 12),
   fp32 and bf16, compiled and not;
4. a few iterations of DMC cartpole swingup at the paper's configuration on the GPU (100 gradient
   steps per episode, MuJoCo through EGL): seconds per phase (train, collect, evaluate) and the
   projected time per 100k env steps;
5. all of it as `gpu_check.json` and `gpu_check.md` in DIR.

With --dry-run the same steps run on the CPU at tiny sizes and uncompiled, in a minute: the suite
runs that dry run, so the script cannot rot while no GPU is at hand. Without --dry-run a torch that
sees no CUDA device is refused in one line (`make gpu-check` uses .venv, whose pinned torch is the CPU
build: on a GPU machine install a CUDA torch there first, or run this script with the machine's own).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from planet.agent import run_episodes  # noqa: E402
from planet.bench import NOTEBOOK, median_ms  # noqa: E402
from planet.config import Config, EnvConfig, ModelConfig, PlannerConfig, RuntimeConfig, TrainConfig  # noqa: E402
from planet.envs import PixelEnv, episode_seed  # noqa: E402
from planet.evaluation import evaluate  # noqa: E402
from planet.loss import TensorBatch, make_optimizer, train_step  # noqa: E402
from planet.model import WorldModel  # noqa: E402
from planet.planner import Planner  # noqa: E402
from planet.replay import SequenceSampler  # noqa: E402
from planet.runtime import Runtime  # noqa: E402
from planet.trainer import Trainer  # noqa: E402

PAPER_MODEL = ModelConfig(network="paper", cnn_depth=32, embed_size=1024, hidden_size=200, reward_hidden_size=200)
PAPER_PLANNER = PlannerConfig(candidates=1000, top_k=100, horizon=12, iterations=10)
TINY_MODEL = ModelConfig(belief_size=16, state_size=4, embed_size=32, hidden_size=16, reward_hidden_size=16,
                         cnn_depth=4)
TINY_PLANNER = PlannerConfig(candidates=32, top_k=4, horizon=4, iterations=2)


def environment(device: torch.device) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "device": str(device), "cpu": platform.processor() or platform.machine()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1))
    return info


def device_tests(device: torch.device) -> dict:
    """The engine's device-parametrised tests on `device`; -> passed, failed and the summary line."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "device", "-k", device.type, "-p", "no:cacheprovider", "tests"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    summary = (out.stdout.strip().splitlines() or [""])[-1]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|error)", summary)}
    return {"ok": out.returncode == 0, "passed": counts.get("passed", 0),
            "failed": counts.get("failed", 0) + counts.get("error", 0), "summary": summary}


def bench(device: torch.device, model_cfg: ModelConfig, planner_cfg: PlannerConfig, steps: int, batch: int,
          image: int, runtime: Runtime, repeats: int) -> dict:
    """Median ms of one train step (batch x steps) and one plan, as `planet.bench` times them."""
    torch.manual_seed(0)
    generator = torch.Generator(device).manual_seed(0)
    model = WorldModel(model_cfg, action_size=1, image_size=image).to(device)
    cfg = TrainConfig()
    optimizer = make_optimizer(model, cfg)
    data = TensorBatch(torch.randint(0, 256, (steps, batch, image, image, 3), dtype=torch.uint8, device=device),
                       torch.rand(steps, batch, 1, device=device) * 2 - 1, torch.randn(steps, batch, device=device))
    train_ms = median_ms(lambda: train_step(model, optimizer, data, cfg, generator, runtime.autocast()),
                         device, repeats)
    planner = Planner(model, planner_cfg, runtime)
    latent = model.rssm.initial(1, device)
    plan_ms = median_ms(lambda: planner.plan(latent, generator), device, repeats)
    return {"precision": runtime.precision, "compile": runtime.compile, "train_step_ms": round(train_ms, 2),
            "plan_ms": round(plan_ms, 2)}


def train_phases(cfg: Config, device: torch.device, iterations: int) -> dict:
    """`iterations` of Alg. 1 on `device` (seed episodes, then train, collect, evaluate one episode
    each), timed per phase; -> seconds per phase and the projected minutes per 100k env steps."""
    envs = [PixelEnv(cfg.env)]
    trainer = Trainer(cfg, envs[0].action_size, Runtime.resolve(cfg.runtime), envs[0].low, envs[0].high)
    rng = trainer.rng
    episodes = run_episodes(envs * 1, [episode_seed(cfg.seed, 0)], None, rng=rng)
    episodes += run_episodes(envs, [episode_seed(cfg.seed, 1)], None, rng=rng)
    sampler = SequenceSampler(episodes, cfg.train.seq_len, rng)
    env_steps = len(episodes[0]) * cfg.env.action_repeat
    phases: dict[str, list[float]] = {"train": [], "collect": [], "evaluate": []}
    for iteration in range(iterations):
        def timed(phase: str, fn):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            result = fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            phases[phase].append(time.perf_counter() - start)
            return result

        seed = episode_seed(cfg.seed, 2 + iteration)
        timed("train", lambda i=iteration: trainer.train_iteration(sampler, i))
        for episode in timed("collect", lambda s=seed: trainer.collect(envs, [s])):
            sampler.add(episode)
        timed("evaluate", lambda: evaluate(trainer.model, cfg, 1, cfg.seed, trainer.runtime))
    for env in envs:
        env.close()
    # The first iteration compiles; the projection uses the later ones where there are any.
    steady = {phase: (times[1:] or times) for phase, times in phases.items()}
    per_iteration = {phase: sum(times) / len(times) for phase, times in steady.items()}
    iterations_per_100k = 100_000 / env_steps
    # Alg. 1's iterations, then the pipeline's evaluation of 10 episodes (run side by side there, so an upper bound).
    projected = ((per_iteration["train"] + per_iteration["collect"]) * iterations_per_100k
                 + 10 * per_iteration["evaluate"])
    return {"env": cfg.env.id, "env_steps_per_episode": env_steps, "iterations": iterations,
            "seconds": {phase: [round(t, 2) for t in times] for phase, times in phases.items()},
            "seconds_per_iteration": {phase: round(t, 2) for phase, t in per_iteration.items()},
            "projected_minutes_per_100k_env_steps": round(projected / 60, 1)}


def markdown(report: dict) -> str:
    env = report["environment"]
    dry = " (dry run at tiny sizes)" if report["dry_run"] else ""
    title = f"### GPU check: {env.get('gpu', env['device'])}{dry}"
    lines = [title,
             "", f"Python {env['python']}, torch {env['torch']}, CUDA {env['cuda']}"
             + (f", {env['gpu_memory_gib']} GiB" if "gpu_memory_gib" in env else ""), "",
             f"Device tests: {report['tests']['summary']}", "",
             "| sizes | precision | compiled rollout | train step (ms) | plan (ms) |", "|---|---|---|---|---|"]
    for row in report["bench"]:
        lines.append(f"| {row['sizes']} | {row['precision']} | {'yes' if row['compile'] else 'no'} | "
                     f"{row['train_step_ms']} | {row['plan_ms']} |")
    phases = report["training"]
    lines += ["", f"{phases['env']}, {phases['iterations']} iterations: seconds per iteration "
              + ", ".join(f"{k} {v}" for k, v in phases["seconds_per_iteration"].items())
              + f"; projected **{phases['projected_minutes_per_100k_env_steps']} min per 100k env steps**."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--dry-run", action="store_true", help="the CPU at tiny sizes (what the suite runs)")
    parser.add_argument("--iterations", type=int, default=3, help="training iterations to time (default 3)")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print(f"error: torch {torch.__version__} sees no CUDA device (a CPU build, or no GPU); "
              "install a CUDA torch, or pass --dry-run for the CPU dry run", file=sys.stderr)
        return 2
    dry = args.dry_run
    device = torch.device("cpu" if dry else "cuda")
    report: dict = {"dry_run": dry, "environment": environment(device)}
    print(json.dumps(report["environment"]), flush=True)
    report["tests"] = device_tests(device)
    print(f"device tests: {report['tests']['summary']}", flush=True)
    sizes = [("tiny", TINY_MODEL, TINY_PLANNER, 8, 4, 32)] if dry else [
        ("notebook", NOTEBOOK.model, NOTEBOOK.planner, NOTEBOOK.train.seq_len, NOTEBOOK.train.batch_size, 64),
        ("paper", PAPER_MODEL, PAPER_PLANNER, 50, 50, 64)]
    report["bench"] = []
    for name, model_cfg, planner_cfg, steps, batch, image in sizes:
        for bf16 in (False, True):
            for compile in (False,) if dry else (False, True):  # compiling on a CPU costs a minute a time
                runtime = Runtime(device, bf16=bf16, compile=compile)
                row = {"sizes": name, **bench(device, model_cfg, planner_cfg, steps, batch, image, runtime,
                                              repeats=1 if dry else 5)}
                report["bench"].append(row)
                print(f"bench: {json.dumps(row)}", flush=True)
    precision = "fp32" if dry else "bf16"
    cfg = Config(env=EnvConfig(id="dm_control/cartpole-swingup-v0", image_size=32 if dry else 64, action_repeat=8,
                               crop=1.0),
                 model=TINY_MODEL if dry else PAPER_MODEL, planner=TINY_PLANNER if dry else PAPER_PLANNER,
                 train=TrainConfig(steps_per_iteration=2 if dry else 100, batch_size=4 if dry else 50,
                                   seq_len=8 if dry else 50),
                 runtime=RuntimeConfig(device=device.type, precision=precision, compile=not dry))
    cfg = dataclasses.replace(cfg, evaluate=dataclasses.replace(cfg.evaluate, episodes=1))
    report["training"] = train_phases(cfg, device, 1 if dry else args.iterations)
    print(f"training: {json.dumps(report['training']['seconds_per_iteration'])}, projected "
          f"{report['training']['projected_minutes_per_100k_env_steps']} min per 100k env steps", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "gpu_check.md").write_text(markdown(report))
    print(markdown(report))
    return 0 if report["tests"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
