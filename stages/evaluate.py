"""Stage `evaluate`: `evaluate.episodes` planner episodes without exploration noise, side by side,
each with its own fixed env seed, planning `evaluate.horizon` steps ahead (0: `planner.horizon`);
writes metrics/eval.json and a video of the first episode."""
from __future__ import annotations

import numpy as np

from experiments import tracking
from planet.envs import episode_steps
from planet.evaluation import evaluate, evaluation_seeds
from planet.fileio import write_json
from planet.video import upscale, write_gif, write_mp4
from stages.common import entry_point, load_model, load_params, progress_bar, setup_torch, train_run_id


@entry_point
def main() -> None:
    cfg = load_params()
    runtime = setup_torch(cfg)
    client, experiment_id = tracking.connect(cfg)
    model, trained = load_model(cfg, runtime.device)
    if cfg.runtime.precision == "auto":
        print(runtime.auto_choice())
    with progress_bar(total=episode_steps(cfg.env), unit="step",
              desc=f"evaluate ({cfg.evaluate.episodes} episodes side by side)") as bar:
        episodes = evaluate(model, cfg, cfg.evaluate.episodes, cfg.seed, runtime, progress=bar.update)
    returns = [round(e.total_reward, 4) for e in episodes]
    metrics = {"return_mean": round(float(np.mean(returns)), 4), "return_std": round(float(np.std(returns)), 4),
               "returns": returns, "episodes": len(returns), "env_seeds": evaluation_seeds(cfg.seed, len(returns))}
    write_json("metrics/eval.json", metrics)
    write_mp4("videos/eval.mp4", upscale(episodes[0].obs, 4), fps=15)
    write_gif("plots/eval.gif", upscale(episodes[0].obs, 4), fps=15)

    run_id = tracking.run_for_stage(client, experiment_id, cfg, "evaluate", train_run_id())
    with tracking.closing_run(client, run_id):
        tracking.log_metrics(client, run_id, {"eval/return_mean": metrics["return_mean"],
                                              "eval/return_std": metrics["return_std"],
                                              **{f"eval/return_ep{i}": r for i, r in enumerate(returns)}},
                             trained.progress.env_steps)
        client.log_artifact(run_id, "videos/eval.mp4", "evaluate")
        client.log_artifact(run_id, "plots/eval.gif", "evaluate")
    print(f"evaluate: return {metrics['return_mean']:.1f} +- {metrics['return_std']:.1f} over {len(returns)} "
          f"episodes, planning {cfg.evaluation_planner().horizon} steps ahead (MLflow run {run_id})")


if __name__ == "__main__":
    main()
