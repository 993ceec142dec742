"""`python -m planet` (or `planet`): train without DVC, and evaluate or dream with any trained model
file, from any folder.

    planet train PARAMS --out DIR
    planet evaluate MODEL [--episodes N] [--horizon H] [--candidates N] [--top-k K] [--iterations I]
                   [--[no-]warm-start] [--seed S] [--video PATH]
    planet dream MODEL [--episodes N] [--out DIR]

PARAMS is a params file (the project's params.yaml, or one of your own); `train` collects the seed
episodes, trains, and rerun on the same DIR resumes or extends the run (`planet.run.train`). MODEL
is a checkpoint or a `model.pt`, or an MLflow model of a training run (`runs:/<run_id>/model`,
`models:/<name>/<version>`, downloaded from `MLFLOW_TRACKING_URI`; needs mlflow); everything else
(env, network, planner) comes from the config recorded in it; `evaluate` can plan with another CEM
(a trained model judged with a larger search, as the paper's 1000/100/10). Mistakes (a missing or
foreign file, a bad number) are one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from pathlib import Path

import numpy as np
import torch

from planet.checkpoint import CheckpointError
from planet.config import Config, ConfigError, load_config
from planet.dream import write_dreams
from planet.evaluation import evaluate
from planet.memory import keep_freed_memory
from planet.replay import EpisodeError
from planet.run import train
from planet.runtime import Runtime
from planet.trained import load_model
from planet.trainer import NonFiniteError
from planet.video import upscale, write_mp4


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


MODEL_HELP = "a checkpoint, a model.pt, runs:/<run_id>/model or models:/<name>/<version>"
# command-line option (as argparse names it) -> the config key it overrides, where a command has it
OVERRIDES = {"horizon": "evaluate__horizon", "candidates": "planner__candidates", "top_k": "planner__top_k",
             "iterations": "planner__iterations", "warm_start": "planner__warm_start"}


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="planet", description="Train PlaNet; evaluate or dream with a trained model.")
    commands = main.add_subparsers(dest="command", required=True)
    train_cmd = commands.add_parser("train", help="train a run in a folder; run again to resume or extend it")
    train_cmd.add_argument("params", type=Path, help="a params file (params.yaml or your own)")
    train_cmd.add_argument("--out", type=Path, required=True, help="the run's folder (model.pt, train.csv, ...)")
    evaluate_cmd = commands.add_parser("evaluate", help="run planner episodes and print the return")
    evaluate_cmd.add_argument("model", help=MODEL_HELP)
    evaluate_cmd.add_argument("--episodes", type=positive_int, help="episodes (default: the model's evaluate.episodes)")
    evaluate_cmd.add_argument("--horizon", type=positive_int, help="planning horizon (default: the model's)")
    evaluate_cmd.add_argument("--candidates", type=positive_int,
                              help="CEM candidates per iteration (default: the model's)")
    evaluate_cmd.add_argument("--top-k", type=positive_int, help="CEM elites refit to (default: the model's)")
    evaluate_cmd.add_argument("--iterations", type=positive_int, help="CEM iterations per plan (default: the model's)")
    evaluate_cmd.add_argument("--warm-start", action=argparse.BooleanOptionalAction,
                              help="start each plan from the last one, shifted (default: the model's)")
    evaluate_cmd.add_argument("--seed", type=int, help="seed of the env resets and the planner (default: the model's)")
    evaluate_cmd.add_argument("--video", type=Path, default=Path("eval.mp4"), help="video of the first episode")
    dream_cmd = commands.add_parser("dream", help="dream open-loop from fresh episodes; write videos and a plot")
    dream_cmd.add_argument("model", help=MODEL_HELP)
    dream_cmd.add_argument("--episodes", type=positive_int, help="episodes (default: the model's dream.episodes)")
    dream_cmd.add_argument("--seed", type=int, help="seed (default: the model's)")
    dream_cmd.add_argument("--out", type=Path, default=Path("dream"), help="folder for the videos and error.png")
    for command in (evaluate_cmd, dream_cmd):
        command.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    return main


def for_this_machine(cfg: Config, **changes) -> Config:
    """The model's config with CLI overrides, precision and threads chosen again for this machine."""
    flat = dataclasses.asdict(cfg)
    flat["runtime"].update(precision="auto", threads=0)
    for key, value in changes.items():
        if value is not None:
            section, name = key.split("__")
            flat[section][name] = value
    return load_config(flat)


def model_file(model: str) -> Path:
    """A path as it is; `runs:/<run_id>/model` or `models:/<name>/<version>` downloaded through MLflow's
    own artifact resolution (from `MLFLOW_TRACKING_URI`) -> the model file in it."""
    if not model.startswith(("runs:/", "models:/")):
        return Path(model)
    try:
        import mlflow
        from mlflow.exceptions import MlflowException
    except ImportError:
        raise ConfigError(f"{model}: an MLflow URI needs mlflow installed (pip install mlflow)") from None
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model))
    except MlflowException as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        if err.error_code == "UNAUTHENTICATED":  # a basic-auth server (docs/team.md)
            first = (f"the MLflow server refused user {user!r}: wrong user name or password" if user else
                     "the MLflow server asks for a login: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
        elif err.error_code == "PERMISSION_DENIED":
            first = f"the MLflow server does not let user {user!r} read it"
        raise CheckpointError(f"{model}: {first}") from None
    if local.is_dir():
        found = sorted(local.rglob("model.pt"))
        if not found:
            raise CheckpointError(f"{model}: holds no model.pt (is it a PlaNet training run's model?)")
        return found[0]
    return local


def run(args: argparse.Namespace) -> None:
    if args.command == "train":
        keep_freed_memory()
        train(args.params, args.out, say=lambda message: print(message, flush=True))
        return
    model, trained_cfg = load_model(model_file(args.model), args.device)
    overrides = {key: getattr(args, option, None) for option, key in OVERRIDES.items()}
    cfg = for_this_machine(trained_cfg, runtime__device=args.device, **overrides)
    runtime = Runtime.resolve(cfg.runtime)
    seed = cfg.seed if args.seed is None else args.seed
    if args.command == "evaluate":
        episodes = evaluate(model, cfg, args.episodes or cfg.evaluate.episodes, seed, runtime)
        returns = [e.total_reward for e in episodes]
        write_mp4(args.video, upscale(episodes[0].obs, 4), fps=15)
        plan = cfg.evaluation_planner()
        print(f"return {np.mean(returns):.1f} +- {np.std(returns):.1f} over {len(returns)} episodes of {cfg.env.id} "
              f"(CEM {plan.candidates}/{plan.top_k}/{plan.iterations}, each plan from "
              f"{'the last' if plan.warm_start else 'zero'}, planning {plan.horizon} steps ahead); "
              f"video of the first: {args.video}")
    else:
        episodes = evaluate(model, cfg, args.episodes or cfg.dream.episodes, seed, runtime)
        generator = torch.Generator(next(model.parameters()).device).manual_seed(seed + 2)
        report = write_dreams(model, episodes, cfg.dream.context_frames, cfg.dream.dream_steps, generator, args.out,
                              cfg.dream.fps, cfg.train.bit_depth)
        print(f"{len(episodes)} dreams in {args.out}/ (videos/, gifs/, error.png): {report.metrics}")


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if os.getcwd() not in sys.path:  # `module:EnvId` envs import from here, as under `python -m planet`
        sys.path.insert(0, os.getcwd())
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` or a batch scheduler stops it as Ctrl-C does
    try:
        run(args)
    except (CheckpointError, ConfigError, EpisodeError, NonFiniteError) as err:
        fail(str(err))
    except OSError as err:
        fail(f"{err.filename or getattr(args, 'model', args.params)}: {err.strerror or err}")
    except KeyboardInterrupt:
        fail("interrupted" + ("; run the same command again to continue from the newest checkpoint"
                              if args.command == "train" else ""))
