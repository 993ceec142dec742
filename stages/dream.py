"""Stage `dream`: for `dream.episodes` replay episodes, filter `context_frames` real frames, then
roll the prior open-loop for `dream_steps` with the recorded actions. Writes side-by-side videos
(green: context, red: dream), the error-versus-horizon curve and predicted versus true reward, and
metrics: pixel error `mse_h{h}` at open-loop step h and `return_error_h{h}`, the predicted minus the
true return over the first h open-loop steps (positive: the model promises more than the actions earn;
the planner scores its plans with exactly such open-loop returns)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from planet.dream import dream, return_error
from planet.replay import episode_paths, load_episode
from planet.video import dream_panel, write_gif, write_mp4
from stages import tracking
from stages.common import (
    REPLAY_DIR,
    entry_point,
    load_model,
    load_params,
    setup_torch,
    write_csv,
    write_json,
)
from stages.plots import plot_dream

OUT = Path("dream")
HORIZONS = (1, 5, 10, 20, 50)


@entry_point
def main() -> None:
    cfg = load_params()
    device = setup_torch(cfg)
    client, experiment_id = tracking.connect(cfg)
    model, trained = load_model(cfg, device)
    paths = episode_paths(REPLAY_DIR)
    # The newest episodes show the trained agent; the seed episodes show random play.
    chosen = paths[-cfg.dream.episodes:]
    generator = torch.Generator(device).manual_seed(cfg.seed + 2)
    shutil.rmtree(OUT, ignore_errors=True)
    error_rows, reward_rows, errors, rewards = [], [], [], []
    return_errors: dict[int, list[float]] = {h: [] for h in HORIZONS}
    for i, path in enumerate(chosen):
        result = dream(model, load_episode(path), cfg.dream.context_frames, cfg.dream.dream_steps, generator,
                       cfg.train.bit_depth)
        panel = dream_panel(result.real, result.imagined, cfg.dream.context_frames)
        write_mp4(OUT / f"videos/dream_{i}.mp4", panel, cfg.dream.fps)
        write_gif(OUT / f"gifs/dream_{i}.gif", panel, cfg.dream.fps)
        errors.append(result.mse.tolist())
        rewards.append((result.reward_true.tolist(), result.reward_pred.tolist()))
        for h in HORIZONS:
            error = return_error(result, cfg.dream.context_frames, h)
            if error is not None:
                return_errors[h].append(error)
        for t, (mse, true, pred) in enumerate(zip(result.mse, result.reward_true, result.reward_pred)):
            horizon = t + 1 - cfg.dream.context_frames  # <= 0: a context frame
            error_rows.append({"episode": i, "step": t + 1, "horizon": horizon, "mse": float(mse)})
            reward_rows.append({"episode": i, "step": t + 1, "reward_true": float(true),
                                "reward_predicted": float(pred)})
    write_csv("plots/dream_error.csv", error_rows)
    write_csv("plots/dream_reward.csv", reward_rows)
    plot_dream(errors, rewards, cfg.dream.context_frames, OUT / "error.png")
    metrics = {}
    for h in HORIZONS:
        values = [r["mse"] for r in error_rows if r["horizon"] == h]
        if values:
            metrics[f"mse_h{h}"] = round(float(np.mean(values)), 6)
        if return_errors[h]:
            metrics[f"return_error_h{h}"] = round(float(np.mean(return_errors[h])), 3)
    write_json("metrics/dream.json", metrics)

    run_id = tracking.run_for_stage(client, experiment_id, cfg, "dream")
    tracking.log_metrics(client, run_id, {f"dream/{k}": v for k, v in metrics.items()}, trained.get("env_steps", 0))
    client.log_artifacts(run_id, str(OUT), "dream")
    print(f"dream: {len(chosen)} dreams in {OUT}/, {metrics} (MLflow run {run_id})")


if __name__ == "__main__":
    main()
