"""What every stage shares: params loading, the clean-error entry point, paths, hashes, atomic writes."""
from __future__ import annotations

import ast
import functools
import hashlib
import json
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from planet.checkpoint import CheckpointError
from planet.config import Config, ConfigError, load_config
from planet.device import keep_freed_memory, resolve_device, with_resolved_precision
from planet.envs import PixelEnv
from planet.fileio import atomic_write
from planet.replay import EpisodeError
from planet.trainer import NonFiniteError

PARAMS = Path("params.yaml")
SEED_DIR = Path("data/seed")
REPLAY_DIR = Path("data/replay")
CHECKPOINT_DIR = Path("checkpoints")
MODEL_PATH = Path("models/model.pt")
TRAIN_RUN = Path("runs/train.json")
ENGINE_DIR = Path(__file__).resolve().parent.parent / "planet"
# Parts of the params that shape the trained model: a checkpoint is only resumed when they match,
TRAIN_SECTIONS = ("seed", "env", "data", "model", "train", "planner", "runtime")
# except these, which only say how long a run goes, how it is saved, or how fast it computes: changing
# them continues the run (tests/test_reliability.py holds a continued run equal to a longer one).
SCHEDULE_KEYS = ("train.iterations", "train.checkpoint_every", "train.keep_checkpoints", "runtime.threads")

USER_ERRORS = (ConfigError, EpisodeError, CheckpointError, NonFiniteError, OSError)


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


class ParamsLoader(yaml.SafeLoader):
    """PyYAML speaks YAML 1.1, where `1e-8` is a string; DVC (`-S train.adam_eps=1e-8`) and YAML 1.2
    write floats that way, so read them as the floats they are."""


ParamsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$"
               r"|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."))


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


def read_params(text: str) -> Any:
    return yaml.load(text, Loader=ParamsLoader)


def load_params(path: Path = PARAMS) -> Config:
    """params.yaml -> validated Config, plus the checks that need the env or the machine."""
    try:
        raw = read_params(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    cfg = load_config(raw)
    resolve_device(cfg.runtime.device)
    env = PixelEnv(cfg.env)  # unknown id, discrete or unbounded actions: ConfigError
    max_steps = env.max_steps
    env.close()
    if max_steps is not None and cfg.train.seq_len > max_steps:
        raise ConfigError(f"train.seq_len: {cfg.train.seq_len} is longer than an episode of {cfg.env.id} "
                          f"({max_steps} steps at action repeat {cfg.env.action_repeat})")
    return cfg


def setup_torch(cfg: Config) -> torch.device:
    keep_freed_memory()
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    torch.manual_seed(cfg.seed)
    return resolve_device(cfg.runtime.device)


def machine_config(cfg: Config, device: torch.device) -> Config:
    """`cfg` with `runtime.precision: auto` resolved for this machine (what the stage computes with;
    fingerprints and MLflow params keep what params.yaml says)."""
    resolved = with_resolved_precision(cfg, device)
    if cfg.runtime.precision == "auto":
        print(f"runtime.precision: auto -> {resolved.runtime.precision} on this {device.type}")
    return resolved


def file_digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:12]


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


def engine_modules(entry: str = "trainer", folder: Path = ENGINE_DIR) -> list[Path]:
    """`planet/<entry>.py` and every engine module it imports, directly or through others."""
    seen: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for node in ast.walk(ast.parse((folder / f"{name}.py").read_text())):
            modules = ([node.module] if isinstance(node, ast.ImportFrom) and node.module
                       else [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            todo += [m.split(".")[1] for m in modules if m.startswith("planet.")]
    return sorted(folder / f"{name}.py" for name in seen)


def code_digest(folder: Path = ENGINE_DIR, entry: str = "trainer") -> str:
    """Hash of the engine code that training runs: a checkpoint from other code is never resumed.
    Only the modules training imports count (the benchmark or the video writer do not), each by its
    syntax tree without docstrings, so edits to comments, docstrings or layout keep a run."""
    digest = hashlib.sha256()
    for path in engine_modules(entry, folder):
        tree = _without_docstrings(ast.parse(path.read_text(), filename=str(path)))
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(ast.dump(tree).encode()).digest())
    return digest.hexdigest()[:12]


def training_fingerprint(cfg: Config, seed_paths: list[Path]) -> str:
    """What a checkpoint's weights depend on: the training params as written (`auto` included) less
    `SCHEDULE_KEYS`, the training code, and the seed episodes."""
    flat = {k: v for k, v in cfg.flat().items() if k.split(".")[0] in TRAIN_SECTIONS and k not in SCHEDULE_KEYS}
    parts = [json.dumps(flat, sort_keys=True), code_digest(), file_digest(seed_paths)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import pandas as pd

    write_text_atomic(path, pd.DataFrame(rows).to_csv(index=False, float_format="%.6g"))


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
