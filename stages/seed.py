"""Stage `seed`: collect `data.seed_episodes` uniform-random episodes into data/seed/."""
from __future__ import annotations

from planet.agent import collect_seed_episodes
from stages.common import SEED_DIR, entry_point, load_params, progress_bar


@entry_point
def main() -> None:
    cfg = load_params()
    with progress_bar(total=cfg.data.seed_episodes, desc="seed episodes", unit="ep") as bar:
        count = collect_seed_episodes(cfg, SEED_DIR, on_episode=bar.update)
    print(f"seed: {count} random episodes in {SEED_DIR}/")


if __name__ == "__main__":
    main()
