"""What every stage shares: the project's paths, the clean-error entry point, progress lines, torch set-up."""
from __future__ import annotations

import functools
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from experiments.tracking import TrackingError
from planet import params
from planet.checkpoint import CheckpointError
from planet.config import Config, ConfigError
from planet.memory import keep_freed_memory
from planet.replay import EpisodeError
from planet.run import RunFolders
from planet.runtime import Runtime
from planet.trainer import NonFiniteError

PARAMS = Path("params.yaml")
SEED_DIR = Path("data/seed")
REPLAY_DIR = Path("data/replay")
CHECKPOINT_DIR = Path("checkpoints")
MODEL_PATH = Path("models/model.pt")
TRAIN_RUN = Path("runs/train.json")
KEPT_DIR = Path(".planet/runs")
FOLDERS = RunFolders(seed=SEED_DIR, replay=REPLAY_DIR, checkpoints=CHECKPOINT_DIR, kept=KEPT_DIR)

USER_ERRORS = (ConfigError, EpisodeError, CheckpointError, NonFiniteError, TrackingError, OSError)


class StageError(RuntimeError):
    """Any other failure that deserves one clear line rather than a traceback."""


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def entry_point(main: Callable[[], None]) -> Callable[[], None]:
    """Run a stage; user mistakes and environment faults exit non-zero with one line, no traceback."""

    @functools.wraps(main)
    def wrapper() -> None:
        signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops a stage the way Ctrl-C does
        try:
            main()
        except (*USER_ERRORS, StageError) as err:
            fail(f"{err}" if not isinstance(err, OSError) or not err.filename else f"{err.filename}: {err.strerror}")
        except KeyboardInterrupt:
            fail("interrupted; rerun `dvc repro` to continue (train resumes from its newest checkpoint)")

    return wrapper


class LineProgress:
    """tqdm's interface as plain lines, one every `every` seconds: carriage-return updates would
    interleave with the stage's own lines in a log file."""

    def __init__(self, total: int | None = None, initial: int = 0, desc: str = "", unit: str = "it",
                 every: float = 30.0, **_: Any):
        self.total, self.count, self.desc, self.unit, self.every = total, initial, desc, unit, every
        self.start = self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.count += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            of = f"/{self.total}" if self.total else ""
            print(f"{self.desc}: {self.count}{of} {self.unit} ({now - self.start:.0f} s)", flush=True)

    def write(self, line: str) -> None:
        print(line, flush=True)

    def close(self) -> None:
        pass

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_bar(**kwargs: Any):
    """A tqdm bar on a terminal; elsewhere (nohup, CI, a pipe) plain periodic lines."""
    from tqdm import tqdm

    return tqdm(**kwargs) if sys.stderr.isatty() else LineProgress(**kwargs)


def load_params(path: Path = PARAMS) -> Config:
    """params.yaml -> validated Config (`planet.params.load_params`)."""
    return params.load_params(path)


def train_run_id() -> str:
    """The MLflow run the train stage logged to (evaluate and dream log beside it)."""
    return json.loads(TRAIN_RUN.read_text())["run_id"]


def setup_torch(cfg: Config) -> Runtime:
    """A stage's process: glibc keeps freed memory, the global seed, and `runtime:` resolved on this
    machine (threads first)."""
    keep_freed_memory()
    torch.manual_seed(cfg.seed)
    return Runtime.resolve(cfg.runtime)


def load_model(cfg: Config, device: torch.device):
    """The train stage's final model, built as it was trained -> (WorldModel in eval mode, its checkpoint).
    One line when it does not fit these params (another network, env or frame size)."""
    from planet.checkpoint import load_checkpoint
    from planet.trained import build_model

    ckpt = load_checkpoint(MODEL_PATH, map_location=device)
    try:
        return build_model(ckpt, cfg, MODEL_PATH, device), ckpt
    except CheckpointError as err:
        raise CheckpointError(f"{err}; rerun the train stage (dvc repro)") from None
