"""Stage `train`: the PlaNet loop. Resumes from the newest checkpoint made under the same params,
code and seed data; the replay is cut back to what that checkpoint had seen, so a resumed run
continues exactly as an uninterrupted one would (all RNG states are in the checkpoint)."""
from __future__ import annotations

import hashlib
import shutil
import time

from tqdm import tqdm

from planet.checkpoint import Checkpoint, latest_checkpoint, list_checkpoints, save_checkpoint, write_checkpoint
from planet.envs import PixelEnv, episode_seed
from planet.fileio import TEMP_GLOB
from planet.replay import SequenceSampler, episode_path, episode_paths, load_episodes, save_episode
from planet.trainer import Trainer
from stages import tracking
from stages.common import (
    CHECKPOINT_DIR,
    MODEL_PATH,
    PARAMS,
    REPLAY_DIR,
    SEED_DIR,
    TRAIN_RUN,
    TRAIN_SECTIONS,
    StageError,
    code_digest,
    entry_point,
    file_digest,
    load_params,
    machine_config,
    setup_torch,
    write_csv,
    write_json,
)
from stages.plots import plot_training

CURVES = "plots/train.csv"


def env_steps(episode, action_repeat: int, limit: int | None) -> int:
    steps = len(episode) * action_repeat
    return min(steps, limit) if limit and episode.truncated[-1] else steps


def prepare_replay(ckpt: Checkpoint | None) -> int:
    """Replay = seed episodes + those collected up to the checkpoint; later ones are discarded."""
    for folder in (REPLAY_DIR, CHECKPOINT_DIR):  # temp files of writes a kill interrupted
        for stale in folder.glob(TEMP_GLOB):
            stale.unlink()
    if ckpt is None:
        if list_checkpoints(CHECKPOINT_DIR):
            print(f"train: starting over: no checkpoint in {CHECKPOINT_DIR}/ matches these params, engine code "
                  f"and seed data; removing it and {REPLAY_DIR}/")
        shutil.rmtree(REPLAY_DIR, ignore_errors=True)
        shutil.rmtree(CHECKPOINT_DIR, ignore_errors=True)
        for index, path in enumerate(episode_paths(SEED_DIR)):
            episode_path(REPLAY_DIR, index).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, episode_path(REPLAY_DIR, index))
        return len(episode_paths(SEED_DIR))
    count = ckpt.extra["episodes"]
    for path in episode_paths(REPLAY_DIR)[count:]:
        path.unlink()
    if len(episode_paths(REPLAY_DIR)) != count:
        raise StageError(f"{REPLAY_DIR}: holds {len(episode_paths(REPLAY_DIR))} episodes but the checkpoint of "
                         f"iteration {ckpt.iteration} needs {count}; delete {CHECKPOINT_DIR}/ to start over")
    return count


@entry_point
def main() -> None:
    cfg = load_params()
    device = setup_torch(cfg)
    client, experiment_id = tracking.connect(cfg)  # an unreachable store fails here, before any work
    if not episode_paths(SEED_DIR):
        raise StageError(f"{SEED_DIR}/ holds no episodes; run the seed stage first (dvc repro)")
    digest = "|".join([cfg.fingerprint(*TRAIN_SECTIONS), code_digest(), file_digest(episode_paths(SEED_DIR))])
    fingerprint = hashlib.sha256(digest.encode()).hexdigest()[:16]

    envs = [PixelEnv(cfg.env) for _ in range(cfg.train.collect_episodes)]
    trainer = Trainer(machine_config(cfg, device), envs[0].action_size, device)
    ckpt = latest_checkpoint(CHECKPOINT_DIR, fingerprint, warn=lambda msg: print(f"train: {msg}"))
    episodes = prepare_replay(ckpt)
    limit = envs[0].env_step_limit
    state = {"iteration": 0, "episodes": episodes, "rows": [], "elapsed": 0.0, "run_id": None,
             "env_steps": sum(env_steps(e, cfg.env.action_repeat, limit) for e in load_episodes(SEED_DIR))}
    if ckpt is not None:
        trainer.restore(ckpt)
        state.update(ckpt.extra, iteration=ckpt.iteration)
        print(f"train: resuming after iteration {ckpt.iteration} ({state['episodes']} episodes)")
    run_id = tracking.start_train_run(client, experiment_id, cfg, tracking.run_tags(trainer.cfg, device, fingerprint),
                                      state["run_id"])
    state["run_id"] = run_id
    write_json(TRAIN_RUN, {"run_id": run_id, "experiment_id": experiment_id})

    sampler = SequenceSampler(load_episodes(REPLAY_DIR), cfg.train.seq_len, trainer.rng)
    bar = tqdm(total=cfg.train.iterations, initial=state["iteration"], desc="train", unit="it")
    for iteration in range(state["iteration"], cfg.train.iterations):
        start = time.perf_counter()
        losses = trainer.train_iteration(sampler, iteration)
        train_seconds = time.perf_counter() - start
        seeds = [episode_seed(cfg.seed, state["episodes"] + k) for k in range(len(envs))]
        collected = trainer.collect(envs, seeds)
        for episode in collected:
            save_episode(episode_path(REPLAY_DIR, state["episodes"]), episode)
            sampler.add(episode)
            state["episodes"] += 1
            state["env_steps"] += env_steps(episode, cfg.env.action_repeat, limit)
        state["elapsed"] += time.perf_counter() - start
        row = {"iteration": iteration + 1, "env_steps": state["env_steps"], "episodes": state["episodes"], **losses,
               "collect_return": sum(e.total_reward for e in collected) / len(collected),
               "grad_steps_per_s": cfg.train.steps_per_iteration / train_seconds, "wall_time_s": state["elapsed"]}
        record_iteration(client, run_id, state, row, bar)
        done = iteration + 1
        if done % cfg.train.checkpoint_every == 0 or done == cfg.train.iterations:
            save_checkpoint(CHECKPOINT_DIR, trainer.checkpoint(done, fingerprint, {**state, "iteration": done}),
                            cfg.train.keep_checkpoints)
    bar.close()
    for env in envs:
        env.close()
    finish_run(client, run_id, cfg.train.iterations,
               Checkpoint(cfg.train.iterations, fingerprint, trainer.model.state_dict(), {}, {},
                          {"run_id": run_id, "action_size": envs[0].action_size, "env_steps": state["env_steps"]}),
               state)


def record_iteration(client, run_id: str, state: dict, row: dict, bar: tqdm) -> None:
    """One finished iteration -> the curves file, MLflow (step = env steps) and one console line."""
    state["rows"].append(row)
    write_csv(CURVES, state["rows"])
    tracking.log_metrics(client, run_id, {k: v for k, v in row.items() if k != "iteration"}, step=row["env_steps"])
    bar.update(1)
    bar.write(f"it {row['iteration']:4d} | steps {row['env_steps']:6d} | loss {row['total']:9.2f} "
              f"(recon {row['recon']:.2f} reward {row['reward']:.3f} kl {row['kl']:.2f}) | "
              f"return {row['collect_return']:8.1f} | {row['wall_time_s'] / 60:5.1f} min")


def finish_run(client, run_id: str, iterations: int, model: Checkpoint, state: dict) -> None:
    """The stage's outputs: the final model (weights only, for evaluate and dream), curves, metrics."""
    write_csv(CURVES, state["rows"])  # also when resuming a finished run: DVC deleted it before this stage
    write_checkpoint(MODEL_PATH, model)
    last = state["rows"][-1] if state["rows"] else {}
    write_json("metrics/train.json", {"iterations": iterations, "episodes": state["episodes"],
                                      "env_steps": state["env_steps"],
                                      **{k: round(v, 6) for k, v in last.items()
                                         if k not in ("iteration", "env_steps", "episodes", "wall_time_s",
                                                      "grad_steps_per_s")}})
    plot_training(state["rows"], "plots/train.png")
    client.log_artifact(run_id, "plots/train.png", "plots")
    client.log_artifact(run_id, str(PARAMS))
    client.set_terminated(run_id)
    print(f"train: done, {state['env_steps']} env steps, model in {MODEL_PATH}, MLflow run {run_id}")


if __name__ == "__main__":
    main()
