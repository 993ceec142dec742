"""Stage `seed`: collect `data.seed_episodes` uniform-random episodes into data/seed/."""
from __future__ import annotations

import shutil

import numpy as np

from planet.agent import run_episodes
from planet.envs import PixelEnv, episode_seed
from planet.replay import episode_path, save_episode
from stages.common import SEED_DIR, entry_point, load_params, progress_bar


@entry_point
def main() -> None:
    cfg = load_params()
    rng = np.random.default_rng([cfg.seed, 2])
    env = PixelEnv(cfg.env)
    shutil.rmtree(SEED_DIR, ignore_errors=True)
    bar = progress_bar(total=cfg.data.seed_episodes, desc="seed episodes", unit="ep")
    for index in range(cfg.data.seed_episodes):
        (episode,) = run_episodes([env], [episode_seed(cfg.seed, index)], rng=rng)
        save_episode(episode_path(SEED_DIR, index), episode)
        bar.update(1)
    bar.close()
    env.close()
    print(f"seed: {cfg.data.seed_episodes} random episodes in {SEED_DIR}/")


if __name__ == "__main__":
    main()
