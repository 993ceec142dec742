"""Stage `train`: the PlaNet loop (paper Alg. 1).

A run resumes from the newest checkpoint whose fingerprint (the training params less the schedule
keys, the training code and the seed episodes) matches; the replay is cut back to what that
checkpoint had seen, and every RNG state is in it, so a resumed or extended run continues exactly as
an uninterrupted one would. When settings that shape training change, the earlier run's checkpoints
and replay are kept aside (`stages.runs`), never deleted, and changing the settings back resumes it."""
from __future__ import annotations

import dataclasses
import time

from planet.checkpoint import (
    Checkpoint,
    TrainProgress,
    latest_checkpoint,
    list_checkpoints,
    save_checkpoint,
    write_checkpoint,
)
from planet.config import Config, load_config
from planet.envs import PixelEnv, episode_seed
from planet.fileio import TEMP_GLOB
from planet.plots import plot_training
from planet.replay import SequenceSampler, episode_path, episode_paths, load_episodes, save_episode
from planet.trainer import Trainer
from stages import runs, tracking
from stages.common import (
    CHECKPOINT_DIR,
    MODEL_PATH,
    PARAMS,
    REPLAY_DIR,
    SCHEDULE_KEYS,
    SEED_DIR,
    TRAIN_RUN,
    TRAIN_SECTIONS,
    StageError,
    entry_point,
    load_params,
    machine_config,
    progress_bar,
    setup_torch,
    training_fingerprint,
    write_csv,
    write_json,
)

CURVES = "plots/train.csv"
TIMING = "plots/timing.csv"


def env_steps(episode, action_repeat: int, limit: int | None) -> int:
    steps = len(episode) * action_repeat
    return min(steps, limit) if limit and episode.truncated[-1] else steps


def changed_keys(ckpt: Checkpoint, cfg: Config) -> list[str]:
    """The training params that differ between a checkpoint's run and `cfg`."""
    try:
        before = load_config(ckpt.config).flat()
    except Exception:  # a config this code no longer reads
        return ["(unreadable config)"]
    now = cfg.flat()
    ignored = {*SCHEDULE_KEYS, *(["runtime.precision"] if cfg.runtime.precision == "auto" else [])}
    return [k for k in now if k.split(".")[0] in TRAIN_SECTIONS and k not in ignored and before.get(k) != now[k]]


def resume_point(params: Config, fingerprint: str) -> Checkpoint | None:
    """The checkpoint to resume from: the newest one of this fingerprint, in checkpoints/ or in a
    kept run. Another run's checkpoints and replay are kept aside first, never deleted."""
    for folder in (REPLAY_DIR, CHECKPOINT_DIR):  # temp files of writes a kill interrupted
        for stale in folder.glob(TEMP_GLOB):
            stale.unlink()
    ckpt = latest_checkpoint(CHECKPOINT_DIR, fingerprint, warn=lambda msg: print(f"train: {msg}"))
    if ckpt is not None:
        return ckpt
    if list_checkpoints(CHECKPOINT_DIR):
        other = latest_checkpoint(CHECKPOINT_DIR, None, warn=lambda msg: None)
        if other is None:
            kept = runs.keep("unreadable", {"iteration": "?", "env": "?", "changed": []})
            print(f"train: no checkpoint in {CHECKPOINT_DIR}/ loads; set them aside in {kept}/ and starting a new run")
        else:
            changed = changed_keys(other, params) or ["engine code or seed episodes"]
            kept = runs.keep(other.fingerprint, {"iteration": other.iteration, "env": other.config["env"]["id"],
                                                 "changed": changed})
            print(f"train: {', '.join(changed)} changed since the run in {CHECKPOINT_DIR}/ (iteration "
                  f"{other.iteration}); kept it in {kept}/ (`python -m stages.runs` lists kept runs); "
                  "starting a new run")
    if runs.take_back(fingerprint):
        print(f"train: these settings match the kept run {fingerprint}; taking it back")
        return latest_checkpoint(CHECKPOINT_DIR, fingerprint, warn=lambda msg: print(f"train: {msg}"))
    return None


def prepare_replay(ckpt: Checkpoint | None) -> int:
    """Replay = seed episodes + those collected up to the checkpoint; later ones are discarded."""
    if ckpt is None:
        for path in episode_paths(REPLAY_DIR):  # a run killed before its first checkpoint
            path.unlink()
        for index, path in enumerate(episode_paths(SEED_DIR)):
            episode_path(REPLAY_DIR, index).parent.mkdir(parents=True, exist_ok=True)
            episode_path(REPLAY_DIR, index).write_bytes(path.read_bytes())
        return len(episode_paths(SEED_DIR))
    count = ckpt.progress.episodes
    for path in episode_paths(REPLAY_DIR)[count:]:
        path.unlink()
    if len(episode_paths(REPLAY_DIR)) != count:
        raise StageError(f"{REPLAY_DIR}: holds {len(episode_paths(REPLAY_DIR))} episodes but the checkpoint of "
                         f"iteration {ckpt.iteration} needs {count}; move {CHECKPOINT_DIR}/ away to start over")
    return count


@entry_point
def main() -> None:
    params = load_params()
    device = setup_torch(params)
    cfg = machine_config(params, device)
    client, experiment_id = tracking.connect(cfg)  # an unreachable store fails here, before any work
    if not episode_paths(SEED_DIR):
        raise StageError(f"{SEED_DIR}/ holds no episodes; run the seed stage first (dvc repro)")
    fingerprint = training_fingerprint(params, episode_paths(SEED_DIR))
    ckpt = resume_point(params, fingerprint)
    if ckpt is not None and params.runtime.precision == "auto":
        # A run keeps the precision `auto` chose when it started (the choice times a probe).
        cfg = dataclasses.replace(cfg, runtime=dataclasses.replace(
            cfg.runtime, precision=ckpt.config["runtime"]["precision"]))

    envs = [PixelEnv(cfg.env) for _ in range(cfg.train.collect_episodes)]
    trainer = Trainer(cfg, envs[0].action_size, device, envs[0].low, envs[0].high)
    if ckpt is not None and ckpt.iteration > cfg.train.iterations:
        raise StageError(f"train.iterations: {cfg.train.iterations} is fewer than the {ckpt.iteration} this run has "
                         f"already trained ({CHECKPOINT_DIR}/); raise it, or move {CHECKPOINT_DIR}/ away")
    episodes = prepare_replay(ckpt)
    limit = envs[0].env_step_limit
    if ckpt is None:
        progress = TrainProgress(episodes=episodes, env_steps=sum(env_steps(e, cfg.env.action_repeat, limit)
                                                                   for e in load_episodes(SEED_DIR)))
    else:
        trainer.restore(ckpt)
        progress = ckpt.progress
        print(f"train: resuming after iteration {ckpt.iteration} ({progress.episodes} episodes)")
        if ckpt.config["runtime"]["threads"] != cfg.runtime.threads:
            print(f"train: runtime.threads is {cfg.runtime.threads} where this run had "
                  f"{ckpt.config['runtime']['threads']}; it continues, but sums split over another number of "
                  "threads round differently, so from here it is not bit for bit the uninterrupted run")
    progress.run_id = tracking.start_train_run(client, experiment_id, params,
                                               tracking.run_tags(cfg, device, fingerprint), progress.run_id)
    write_json(TRAIN_RUN, {"run_id": progress.run_id, "experiment_id": experiment_id})

    with tracking.closing_run(client, progress.run_id):
        train_loop(cfg, trainer, envs, progress, fingerprint, limit, client)
        finish_run(client, trainer.checkpoint(fingerprint, progress, weights_only=True))


def train_loop(cfg: Config, trainer: Trainer, envs: list[PixelEnv], progress: TrainProgress, fingerprint: str,
               limit: int | None, client) -> None:
    """Iterations up to `train.iterations`: gradient steps, one collected episode per env, a checkpoint
    every `train.checkpoint_every` and at the end."""
    sampler = SequenceSampler(load_episodes(REPLAY_DIR), cfg.train.seq_len, trainer.rng)
    bar = progress_bar(total=cfg.train.iterations, initial=progress.iteration, desc="train", unit="it")
    while progress.iteration < cfg.train.iterations:
        start = time.perf_counter()
        losses = trainer.train_iteration(sampler, progress.iteration)
        train_seconds = time.perf_counter() - start
        seeds = [episode_seed(cfg.seed, progress.episodes + k) for k in range(len(envs))]
        collected = trainer.collect(envs, seeds)
        for episode in collected:
            save_episode(episode_path(REPLAY_DIR, progress.episodes), episode)
            sampler.add(episode)
            progress.episodes += 1
            progress.env_steps += env_steps(episode, cfg.env.action_repeat, limit)
        progress.elapsed_s += time.perf_counter() - start
        progress.iteration += 1
        progress.rows.append({"iteration": progress.iteration, "env_steps": progress.env_steps,
                              "episodes": progress.episodes, **losses,
                              "collect_return": sum(e.total_reward for e in collected) / len(collected)})
        progress.timing.append({"iteration": progress.iteration, "env_steps": progress.env_steps,
                                "grad_steps_per_s": cfg.train.steps_per_iteration / train_seconds,
                                "wall_time_s": progress.elapsed_s})
        record_iteration(client, progress, bar)
        if progress.iteration % cfg.train.checkpoint_every == 0 or progress.iteration == cfg.train.iterations:
            save_checkpoint(CHECKPOINT_DIR, trainer.checkpoint(fingerprint, progress), cfg.train.keep_checkpoints)
    bar.close()
    for env in envs:
        env.close()


def record_iteration(client, progress: TrainProgress, bar) -> None:
    """One finished iteration -> the curves files, MLflow (step = env steps) and one console line."""
    row, timing = progress.rows[-1], progress.timing[-1]
    write_csv(CURVES, progress.rows)
    write_csv(TIMING, progress.timing)
    metrics = {k: v for k, v in {**row, **timing}.items() if k != "iteration"}
    tracking.log_metrics(client, progress.run_id, metrics, step=row["env_steps"])
    bar.update(1)
    bar.write(f"it {row['iteration']:4d} | steps {row['env_steps']:6d} | loss {row['total']:9.2f} "
              f"(recon {row['recon']:.2f} reward {row['reward']:.3f} kl {row['kl']:.2f}) | "
              f"return {row['collect_return']:8.1f} | {timing['wall_time_s'] / 60:5.1f} min")


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
    print(f"train: done, {progress.env_steps} env steps, model in {MODEL_PATH}, MLflow run {progress.run_id}")


if __name__ == "__main__":
    main()
