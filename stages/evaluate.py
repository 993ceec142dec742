"""Stage `evaluate`: `evaluate.episodes` planner episodes without exploration noise, side by side,
each with its own fixed env seed, planning `evaluate.horizon` steps ahead (0: `planner.horizon`);
writes metrics/eval.json and a video of the first episode."""
from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from planet.agent import Agent, run_episodes
from planet.envs import PixelEnv, episode_seed
from planet.planner import Planner
from planet.video import upscale, write_gif, write_mp4
from stages import tracking
from stages.common import entry_point, load_model, load_params, machine_config, setup_torch, write_json

EVAL_STREAM = 1  # env seeds disjoint from training episodes'


@entry_point
def main() -> None:
    cfg = load_params()
    device = setup_torch(cfg)
    client, experiment_id = tracking.connect(cfg)
    model, trained = load_model(cfg, device)
    envs = [PixelEnv(cfg.env) for _ in range(cfg.evaluate.episodes)]
    planner = cfg.evaluation_planner()
    precision = machine_config(cfg, device).runtime.precision
    agent = Agent(model, Planner(model, planner, precision, cfg.runtime.compile),
                  torch.Generator(device).manual_seed(cfg.seed + 1), cfg.train.bit_depth)
    seeds = [episode_seed(cfg.seed, i, EVAL_STREAM) for i in range(cfg.evaluate.episodes)]
    with tqdm(total=envs[0].max_steps, desc=f"evaluate ({len(envs)} episodes side by side)", unit="step") as bar:
        episodes = run_episodes(envs, seeds, agent, exploration_noise=0.0, progress=bar.update)
    returns = [round(e.total_reward, 4) for e in episodes]
    metrics = {"return_mean": round(float(np.mean(returns)), 4), "return_std": round(float(np.std(returns)), 4),
               "returns": returns, "episodes": len(returns), "env_seeds": seeds}
    write_json("metrics/eval.json", metrics)
    frames = upscale(episodes[0].obs, 4)
    write_mp4("videos/eval.mp4", frames, fps=15)
    write_gif("plots/eval.gif", episodes[0].obs, fps=15)

    run_id = tracking.run_for_stage(client, experiment_id, cfg, "evaluate")
    step = trained.get("env_steps", 0)
    tracking.log_metrics(client, run_id, {"eval/return_mean": metrics["return_mean"],
                                          "eval/return_std": metrics["return_std"],
                                          **{f"eval/return_ep{i}": r for i, r in enumerate(returns)}}, step)
    client.log_artifact(run_id, "videos/eval.mp4", "evaluate")
    client.log_artifact(run_id, "plots/eval.gif", "evaluate")
    print(f"evaluate: return {metrics['return_mean']:.1f} +- {metrics['return_std']:.1f} over {len(returns)} "
          f"episodes, planning {planner.horizon} steps ahead (MLflow run {run_id})")
    for env in envs:
        env.close()


if __name__ == "__main__":
    main()
