"""Checkpoints: model, optimizer, the loop's progress, every RNG state, the resolved config that
trained them and the fingerprint of what shaped them.

A checkpoint describes itself: `config` is the whole resolved `Config` (model sizes, env id, image
size, ...) and `action_low`/`action_high` the env's action bounds, so a model file can be rebuilt,
evaluated and acted with anywhere, with no params file (`planet.trained`). Written atomically (temp
file, fsync, rename), loaded with `torch.load(weights_only=True)` so a checkpoint can never run
pickled code, and refused with an error naming the file when it is truncated, foreign, of another
format, or was made under a different fingerprint.
"""
from __future__ import annotations

import dataclasses
import io
import pickle
import random
import re
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from planet.fileio import atomic_write

FORMAT = "planet-checkpoint/2"
ENGINE_VERSION = "0.2.0"
_NAME = re.compile(r"^checkpoint_(\d{6})\.pt$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file."""


@dataclass
class TrainProgress:
    """The training loop's bookkeeping, carried in every checkpoint so a resumed run continues it."""

    iteration: int = 0  # iterations completed
    episodes: int = 0  # episodes in the replay: seed episodes, then one file per collected episode
    env_steps: int = 0  # env steps in those episodes (action repeat included)
    elapsed_s: float = 0.0  # wall time spent training and collecting so far
    rows: list[dict[str, float]] = field(default_factory=list)  # the learning curves, one row per iteration
    timing: list[dict[str, float]] = field(default_factory=list)  # speed per iteration (never byte-stable)
    run_id: str | None = None  # the MLflow run this training logs to


@dataclass
class Checkpoint:
    """One checkpoint file's contents (format `planet-checkpoint/2`)."""

    iteration: int  # iterations completed
    fingerprint: str  # what shaped the weights: the params that matter, engine code, seed data
    config: dict[str, Any]  # the resolved Config as a nested mapping (`load_config` rebuilds it)
    action_low: list[float]  # the env's action bounds, that [-1, 1] maps onto
    action_high: list[float]
    model: dict[str, Any]
    optimizer: dict[str, Any]  # empty in a final model file
    rng: dict[str, Any]  # torch / numpy / python global states and the run's own generators; empty likewise
    progress: TrainProgress
    engine: str = ENGINE_VERSION

    @property
    def action_size(self) -> int:
        return len(self.action_low)


def capture_rng(torch_generator: torch.Generator, numpy_rng: np.random.Generator) -> dict[str, Any]:
    """Every random state a resumed run needs: the global ones and the run's two generators."""
    return {
        "torch_global": torch.get_rng_state(),
        "numpy_global": _jsonable(np.random.get_state(legacy=False)),
        "python": _jsonable(random.getstate()),
        "torch_generator": torch_generator.get_state(),
        "numpy_generator": _jsonable(numpy_rng.bit_generator.state),
    }


def restore_rng(state: dict[str, Any], torch_generator: torch.Generator, numpy_rng: np.random.Generator) -> None:
    """Put back what `capture_rng` took, in place."""
    torch.set_rng_state(state["torch_global"])
    np.random.set_state(state["numpy_global"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch_generator.set_state(state["torch_generator"])
    numpy_rng.bit_generator.state = state["numpy_generator"]


def _jsonable(value: Any) -> Any:
    """numpy arrays -> lists, so that weights_only loading accepts them."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _interned(value: Any) -> Any:
    if isinstance(value, str):
        return sys.intern(value)
    if isinstance(value, dict):
        return {_interned(k): _interned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_interned(v) for v in value]
    return value


def checkpoint_path(folder: Path, iteration: int) -> Path:
    """Where the checkpoint after `iteration` iterations is stored."""
    return Path(folder) / f"checkpoint_{iteration:06d}.pt"


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoint files, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.match(p.name))


def write_checkpoint(path: Path, ckpt: Checkpoint) -> Path:
    """Atomically write one checkpoint file; refuses non-finite weights."""
    for name, tensor in ckpt.model.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"refusing to save iteration {ckpt.iteration}: weight {name} is not finite")
    # Equal strings as one object: pickle writes a string once and then refers to it by identity, so a
    # checkpoint rebuilt from a loaded one (fresh string objects) would be other bytes (and DVC hashes).
    payload = _interned({"format": FORMAT, **dataclasses.asdict(ckpt)})
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_write(path) as f:
        f.write(buffer.getbuffer())
    return path


def save_checkpoint(folder: Path, ckpt: Checkpoint, keep: int) -> Path:
    """Write `checkpoint_<iteration>.pt` into `folder`, then delete all but the newest `keep`."""
    path = write_checkpoint(checkpoint_path(folder, ckpt.iteration), ckpt)
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink()
    return path


def load_checkpoint(path: Path, fingerprint: str | None = None, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load one checkpoint; `fingerprint` given: refuse one made under another config."""
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError,
            AttributeError, TypeError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a loadable checkpoint ({first_line})") from None
    if not isinstance(payload, dict) or not str(payload.get("format", "")).startswith("planet-checkpoint/"):
        raise CheckpointError(f"{path}: not a PlaNet checkpoint (format {FORMAT} expected)")
    if payload["format"] != FORMAT:
        raise CheckpointError(f"{path}: written by an older version of this project ({payload['format']}, "
                              f"{FORMAT} expected); train again")
    if fingerprint is not None and payload["fingerprint"] != fingerprint:
        raise CheckpointError(f"{path}: made under other params, code or data (fingerprint "
                              f"{payload['fingerprint']}, this run {fingerprint})")
    fields = {f.name for f in dataclasses.fields(Checkpoint)}
    values = {k: v for k, v in payload.items() if k in fields}
    values["progress"] = TrainProgress(**values["progress"])
    return Checkpoint(**values)


def latest_checkpoint(folder: Path, fingerprint: str | None,
                      warn: Callable[[str], object] = print) -> Checkpoint | None:
    """The newest checkpoint in `folder` that loads and matches `fingerprint` (None: any); unusable
    ones are reported and skipped."""
    for path in reversed(list_checkpoints(folder)):
        try:
            return load_checkpoint(path, fingerprint)
        except CheckpointError as err:
            warn(f"skipping {err}")
    return None
