"""A training run in folders (paper Alg. 1): seed episodes, then iterations of gradient steps on the
replay and one collected episode per env, a checkpoint every `train.checkpoint_every` and at the end.

    run = TrainingRun(cfg, RunFolders.inside(Path("out")))
    model = run.train(on_iteration=print_row)   # resumes where the folders' newest checkpoint stopped

A run resumes from the newest checkpoint of its fingerprint (`planet.identity`: the training params
less the schedule keys, this code, the seed episodes); the replay is cut back to what that checkpoint
had seen, and every RNG state is in it, so a resumed or extended run continues exactly as an
uninterrupted one would. When settings that shape training change, the earlier run's checkpoints and
replay are kept aside (`planet.kept`), never deleted, and changing the settings back resumes it.
Front ends (the DVC stage, `planet train`, a notebook) add their own files and logging through the
`on_iteration` callback and `progress.run_id`, which checkpoints carry for them.
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from planet import kept
from planet.agent import collect_seed_episodes
from planet.checkpoint import (
    Checkpoint,
    TrainProgress,
    latest_checkpoint,
    list_checkpoints,
    save_checkpoint,
    write_checkpoint,
)
from planet.config import Config, ConfigError
from planet.envs import PixelEnv, episode_seed
from planet.fileio import TEMP_GLOB, write_csv, write_json
from planet.identity import changed_keys, training_fingerprint
from planet.replay import (
    Episode,
    EpisodeError,
    SequenceSampler,
    episode_path,
    episode_paths,
    load_episodes,
    save_episode,
)
from planet.runtime import Runtime, resolve_device
from planet.trainer import Trainer

Say = Callable[[str], object]


@dataclass(frozen=True)
class RunFolders:
    """Where a run keeps its files. `seed` is read only; the others the run manages."""

    seed: Path  # seed episodes
    replay: Path  # seed episodes + one file per collected episode
    checkpoints: Path
    kept: Path  # runs set aside when the settings that shape training change

    @classmethod
    def inside(cls, root: Path) -> RunFolders:
        root = Path(root)
        return cls(root / "seed", root / "replay", root / "checkpoints", root / "kept")

    def parts(self) -> dict[str, Path]:
        """What a kept run holds."""
        return {"checkpoints": self.checkpoints, "replay": self.replay}


def env_steps(episode: Episode, action_repeat: int, limit: int | None) -> int:
    """Env steps an episode took; a time-limited episode's last repeat may be cut short by the limit."""
    steps = len(episode) * action_repeat
    return min(steps, limit) if limit and episode.truncated[-1] else steps


def iteration_line(row: dict[str, float], timing: dict[str, float]) -> str:
    """One finished iteration as one console line."""
    return (f"it {row['iteration']:4d} | steps {row['env_steps']:6d} | loss {row['total']:9.2f} "
            f"(recon {row['recon']:.2f} reward {row['reward']:.3f} kl {row['kl']:.2f}) | "
            f"return {row['collect_return']:8.1f} | {timing['wall_time_s'] / 60:5.1f} min")


class TrainingRun:
    """One run of `cfg` in `folders`. Made, it has found the checkpoint to resume (or set another run
    aside), built the model and the envs and prepared the replay; `train()` runs the iterations left.

    `cfg` is the config as written (`runtime.precision: auto` included: the fingerprint keeps it);
    `self.runtime` is what the run computes on (`runtime.threads` set for the process), `self.cfg` the
    config with its precision. `say` receives the run's few messages."""

    def __init__(self, cfg: Config, folders: RunFolders, say: Say = print):
        if not episode_paths(folders.seed):
            raise EpisodeError(f"{folders.seed}/ holds no seed episodes; collect them first")
        resolve_device(cfg.runtime.device)  # cuda asked for on a machine without: fail before a file moves
        self.folders, self.say = folders, say
        self.set_aside: Path | None = None  # where another run's files went, if they had to move
        self.fingerprint = training_fingerprint(cfg, episode_paths(folders.seed))
        self.resumed = self._resume_point(cfg)
        self.runtime = self._runtime(cfg, self.resumed)
        self.cfg = self.runtime.applied_to(cfg)
        torch.manual_seed(cfg.seed)  # the model's initial weights
        self.envs = [PixelEnv(self.cfg.env) for _ in range(self.cfg.train.collect_episodes)]
        env = self.envs[0]
        self.trainer = Trainer(self.cfg, env.action_size, self.runtime, env.low, env.high)
        self.step_limit = env.env_step_limit
        if self.resumed is not None and self.resumed.iteration > cfg.train.iterations:
            raise ConfigError(f"train.iterations: {cfg.train.iterations} is fewer than the {self.resumed.iteration} "
                              f"this run has already trained ({folders.checkpoints}/); raise it, or move "
                              f"{folders.checkpoints}/ away")
        episodes = self._prepare_replay()
        if self.resumed is None:
            self.progress = TrainProgress(episodes=episodes, env_steps=sum(
                env_steps(e, self.cfg.env.action_repeat, self.step_limit) for e in load_episodes(folders.seed)))
        else:
            self.trainer.restore(self.resumed)
            self.progress = self.resumed.progress
            say(f"resuming after iteration {self.resumed.iteration} ({self.progress.episodes} episodes)")
            threads = self.resumed.config["runtime"]["threads"]
            if threads != cfg.runtime.threads:
                say(f"runtime.threads is {cfg.runtime.threads} where this run had {threads}; it continues, but "
                    "sums split over another number of threads round differently, so from here it is not bit "
                    "for bit the uninterrupted run")

    def _runtime(self, cfg: Config, resumed: Checkpoint | None) -> Runtime:
        """`cfg.runtime` on this machine. With `precision: auto` a run keeps the precision it started
        with (the choice times a probe, which could choose otherwise on a busy machine)."""
        if cfg.runtime.precision == "auto" and resumed is not None:
            return Runtime.resolve(dataclasses.replace(cfg.runtime, precision=resumed.config["runtime"]["precision"]))
        runtime = Runtime.resolve(cfg.runtime)
        if cfg.runtime.precision == "auto":
            self.say(runtime.auto_choice())
        return runtime

    def _resume_point(self, cfg: Config) -> Checkpoint | None:
        """The newest checkpoint of this fingerprint, in `checkpoints` or in a kept run. Another run's
        checkpoints and replay are kept aside first, never deleted."""
        folders, say = self.folders, self.say
        for folder in (folders.replay, folders.checkpoints):  # temp files of writes a kill interrupted
            for stale in folder.glob(TEMP_GLOB):
                stale.unlink()
        ckpt = latest_checkpoint(folders.checkpoints, self.fingerprint, warn=say)
        if ckpt is not None:
            return ckpt
        if list_checkpoints(folders.checkpoints):
            other = latest_checkpoint(folders.checkpoints, None, warn=lambda msg: None)
            if other is None:
                where = kept.keep(folders.kept, "unreadable", folders.parts(),
                                  {"iteration": "?", "env": "?", "changed": []})
                say(f"no checkpoint in {folders.checkpoints}/ loads; set them aside in {where}/ and starting a new run")
                self.set_aside = where
            else:
                changed = changed_keys(other.config, cfg) or ["engine code or seed episodes"]
                where = kept.keep(folders.kept, other.fingerprint, folders.parts(),
                                  {"iteration": other.iteration, "env": other.config["env"]["id"], "changed": changed})
                say(f"{', '.join(changed)} changed since the run in {folders.checkpoints}/ (iteration "
                    f"{other.iteration}); kept it in {where}/; starting a new run")
                self.set_aside = where
        if kept.take_back(folders.kept, self.fingerprint, folders.parts()):
            say(f"these settings match the kept run {self.fingerprint}; taking it back")
            return latest_checkpoint(folders.checkpoints, self.fingerprint, warn=say)
        return None

    def _prepare_replay(self) -> int:
        """Replay = seed episodes + those collected up to the checkpoint; later ones are discarded."""
        replay, seed = self.folders.replay, self.folders.seed
        if self.resumed is None:
            for path in episode_paths(replay):  # a run killed before its first checkpoint
                path.unlink()
            for index, path in enumerate(episode_paths(seed)):
                episode_path(replay, index).parent.mkdir(parents=True, exist_ok=True)
                episode_path(replay, index).write_bytes(path.read_bytes())
            return len(episode_paths(seed))
        count = self.resumed.progress.episodes
        for path in episode_paths(replay)[count:]:
            path.unlink()
        if len(episode_paths(replay)) != count:
            raise EpisodeError(f"{replay}: holds {len(episode_paths(replay))} episodes but the checkpoint of "
                               f"iteration {self.resumed.iteration} needs {count}; move "
                               f"{self.folders.checkpoints}/ away to start over")
        return count

    def train(self, on_iteration: Callable[[TrainProgress], object] | None = None) -> Checkpoint:
        """The iterations up to `train.iterations` -> the final model (weights, config, action bounds;
        no optimizer or RNG state). `on_iteration(progress)` after each, before its checkpoint."""
        cfg, trainer, progress = self.cfg, self.trainer, self.progress
        sampler = SequenceSampler(load_episodes(self.folders.replay), cfg.train.seq_len, trainer.rng)
        while progress.iteration < cfg.train.iterations:
            start = time.perf_counter()
            losses = trainer.train_iteration(sampler, progress.iteration)
            train_seconds = time.perf_counter() - start
            seeds = [episode_seed(cfg.seed, progress.episodes + k) for k in range(len(self.envs))]
            collected = trainer.collect(self.envs, seeds)
            for episode in collected:
                save_episode(episode_path(self.folders.replay, progress.episodes), episode)
                sampler.add(episode)
                progress.episodes += 1
                progress.env_steps += env_steps(episode, cfg.env.action_repeat, self.step_limit)
            progress.elapsed_s += time.perf_counter() - start
            progress.iteration += 1
            progress.rows.append({"iteration": progress.iteration, "env_steps": progress.env_steps,
                                  "episodes": progress.episodes, **losses,
                                  "collect_return": sum(e.total_reward for e in collected) / len(collected)})
            progress.timing.append({"iteration": progress.iteration, "env_steps": progress.env_steps,
                                    "grad_steps_per_s": cfg.train.steps_per_iteration / train_seconds,
                                    "wall_time_s": progress.elapsed_s})
            if on_iteration is not None:
                on_iteration(progress)
            if progress.iteration % cfg.train.checkpoint_every == 0 or progress.iteration == cfg.train.iterations:
                save_checkpoint(self.folders.checkpoints, trainer.checkpoint(self.fingerprint, progress),
                                cfg.train.keep_checkpoints)
        self.close()
        return trainer.checkpoint(self.fingerprint, progress, weights_only=True)

    def close(self) -> None:
        for env in self.envs:
            env.close()


def seed_episodes_for(cfg: Config, folder: Path, say: Say = print) -> None:
    """Collect the seed episodes into `folder` unless it holds those of these settings already
    (`folder/settings.json` records the params they depend on: seed, env, data)."""
    settings = {k: v for k, v in cfg.flat().items() if k.split(".")[0] in ("seed", "env", "data")}
    record = folder / "settings.json"
    if episode_paths(folder) and record.exists() and json.loads(record.read_text()) == settings:
        return
    say(f"collecting {cfg.data.seed_episodes} seed episodes with random actions into {folder}/")
    collect_seed_episodes(cfg, folder)
    write_json(record, settings)


def train(config: Config | str | Path, out: str | Path, say: Say = print,
          on_iteration: Callable[[TrainProgress], object] | None = None) -> Path:
    """Train a run of `config` (a Config, or a params file) in the folder `out` -> its model file.

    Run again on the same folder, it resumes from the newest checkpoint; with more `train.iterations`
    it extends the run; with other settings that shape training it keeps the earlier run aside in
    `out/kept/` and starts anew. `out` holds seed/, replay/, checkpoints/, kept/, and after each
    iteration train.csv and timing.csv (the learning curves and the speed); at the end model.pt."""
    if not isinstance(config, Config):
        from planet.params import load_params

        config = load_params(Path(config))
    out = Path(out)
    seed_episodes_for(config, out / "seed", say)
    run = TrainingRun(config, RunFolders.inside(out), say)

    def record(progress: TrainProgress) -> None:
        write_csv(out / "train.csv", progress.rows)
        write_csv(out / "timing.csv", progress.timing)
        say(iteration_line(progress.rows[-1], progress.timing[-1]))
        if on_iteration is not None:
            on_iteration(progress)

    model = run.train(record)
    write_csv(out / "train.csv", model.progress.rows)
    write_csv(out / "timing.csv", model.progress.timing)
    write_checkpoint(out / "model.pt", model)
    progress = model.progress
    say(f"done: {progress.iteration} iterations, {progress.env_steps} env steps; model in {out / 'model.pt'}")
    return out / "model.pt"
