"""Stage `train`: the PlaNet training run (`planet.run`, paper Alg. 1) in the DVC project's folders,
logged to MLflow, with DVC's outputs: the model, the curves, the metrics.

Rerun, it resumes from the newest checkpoint of these settings; changed settings that shape training
keep the earlier run aside (`python -m experiments.runs` lists kept runs)."""
from __future__ import annotations

from experiments import tracking
from planet.checkpoint import Checkpoint, TrainProgress, write_checkpoint
from planet.fileio import write_csv, write_json
from planet.memory import keep_freed_memory
from planet.plots import plot_training
from planet.replay import episode_paths
from planet.run import TrainingRun, iteration_line
from stages.common import (
    FOLDERS,
    MODEL_PATH,
    PARAMS,
    SEED_DIR,
    TRAIN_RUN,
    StageError,
    entry_point,
    load_params,
    progress_bar,
)

CURVES = "plots/train.csv"
TIMING = "plots/timing.csv"


def say(message: str) -> None:
    print(f"train: {message}", flush=True)


@entry_point
def main() -> None:
    params = load_params()
    keep_freed_memory()  # threads and seeds are the run's own (`TrainingRun`)
    client, experiment_id = tracking.connect(params)  # an unreachable store fails here, before any work
    if not episode_paths(SEED_DIR):
        raise StageError(f"{SEED_DIR}/ holds no episodes; run the seed stage first (dvc repro)")
    run = TrainingRun(params, FOLDERS, say)
    if run.set_aside is not None:
        say("`python -m experiments.runs` lists kept runs")
    progress = run.progress
    tags = tracking.run_tags(run.cfg, run.runtime.device, run.fingerprint)
    progress.run_id = tracking.start_train_run(client, experiment_id, params, tags, progress.run_id)
    write_json(TRAIN_RUN, {"run_id": progress.run_id, "experiment_id": experiment_id})
    with tracking.closing_run(client, progress.run_id):
        bar = progress_bar(total=run.cfg.train.iterations, initial=progress.iteration, desc="train", unit="it")
        model = run.train(on_iteration=lambda p: record_iteration(client, p, bar))
        bar.close()
        finish_run(client, model)


def record_iteration(client, progress: TrainProgress, bar) -> None:
    """One finished iteration -> the curves files, MLflow (step = env steps) and one console line."""
    row, timing = progress.rows[-1], progress.timing[-1]
    write_csv(CURVES, progress.rows)
    write_csv(TIMING, progress.timing)
    metrics = {k: v for k, v in {**row, **timing}.items() if k != "iteration"}
    tracking.log_metrics(client, progress.run_id, metrics, step=row["env_steps"])
    bar.update(1)
    bar.write(iteration_line(row, timing))


def finish_run(client, model: Checkpoint) -> None:
    """The stage's outputs: the final model (weights, config and action bounds), curves, metrics."""
    progress = model.progress
    write_csv(CURVES, progress.rows)  # also when resuming a finished run: DVC deleted it before this stage
    write_csv(TIMING, progress.timing)
    write_checkpoint(MODEL_PATH, model)
    last = progress.rows[-1] if progress.rows else {}
    write_json("metrics/train.json", {"iterations": progress.iteration, "episodes": progress.episodes,
                                      "env_steps": progress.env_steps,
                                      **{k: round(v, 6) for k, v in last.items()
                                         if k not in ("iteration", "env_steps", "episodes")}})
    plot_training(progress.rows, "plots/train.png")
    client.log_artifact(progress.run_id, "plots/train.png", "plots")
    client.log_artifact(progress.run_id, str(PARAMS))
    tracking.log_model(progress.run_id, MODEL_PATH, model.config)
    print(f"train: done, {progress.env_steps} env steps, model in {MODEL_PATH}, MLflow run {progress.run_id}")


if __name__ == "__main__":
    main()
