"""Stage `dream`: for `dream.episodes` replay episodes, filter `context_frames` real frames, then
roll the prior open-loop for `dream_steps` with the recorded actions. Writes side-by-side videos
(green: context, red: dream), the error-versus-horizon curve and predicted versus true reward, and
metrics: pixel error `mse_h{h}` at open-loop step h and `return_error_h{h}`, the predicted minus the
true return over the first h open-loop steps (positive: the model promises more than the actions earn;
the planner scores its plans with exactly such open-loop returns)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from experiments import tracking
from planet.dream import write_dreams
from planet.fileio import write_csv, write_json
from planet.replay import episode_paths, load_episode
from stages.common import REPLAY_DIR, entry_point, load_model, load_params, setup_torch, train_run_id

OUT = Path("dream")


@entry_point
def main() -> None:
    cfg = load_params()
    fp32 = dataclasses.replace(cfg.runtime, precision="fp32")  # dreams run the model in fp32: nothing to probe
    device = setup_torch(dataclasses.replace(cfg, runtime=fp32)).device
    client, experiment_id = tracking.connect(cfg)
    model, trained = load_model(cfg, device)
    # The newest episodes show the trained agent; the seed episodes show random play.
    episodes = [load_episode(path) for path in episode_paths(REPLAY_DIR)[-cfg.dream.episodes:]]
    generator = torch.Generator(device).manual_seed(cfg.seed + 2)
    report = write_dreams(model, episodes, cfg.dream.context_frames, cfg.dream.dream_steps, generator, OUT,
                          cfg.dream.fps, cfg.train.bit_depth)
    write_csv("plots/dream_error.csv", report.errors)
    write_csv("plots/dream_reward.csv", report.rewards)
    write_json("metrics/dream.json", report.metrics)

    run_id = tracking.run_for_stage(client, experiment_id, cfg, "dream", train_run_id())
    with tracking.closing_run(client, run_id):
        tracking.log_metrics(client, run_id, {f"dream/{k}": v for k, v in report.metrics.items()},
                             trained.progress.env_steps)
        client.log_artifacts(run_id, str(OUT), "dream")
    print(f"dream: {len(episodes)} dreams in {OUT}/, {report.metrics} (MLflow run {run_id})")


if __name__ == "__main__":
    main()
