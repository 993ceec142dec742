"""A params file (`params.yaml`) -> a validated `Config`: the one loader of the DVC stages and the CLI.

Besides `load_config`'s checks of each key, it checks what needs the machine or the env: the device
exists, the env id makes a pixel env with bounded continuous actions, and `train.seq_len` fits in
an episode. PyYAML is imported here only, so `planet` imports without it.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from planet.config import Config, ConfigError, load_config
from planet.envs import PixelEnv
from planet.runtime import resolve_device


class ParamsLoader(yaml.SafeLoader):
    """PyYAML speaks YAML 1.1, where `1e-8` is a string; DVC (`-S train.adam_eps=1e-8`) and YAML 1.2
    write floats that way, so read them as the floats they are."""


ParamsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$"
               r"|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."))


def read_params(text: str) -> Any:
    return yaml.load(text, Loader=ParamsLoader)


def load_params(path: Path) -> Config:
    """A params file -> validated Config, plus the checks that need the env or the machine."""
    path = Path(path)
    try:
        raw = read_params(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a params file") from None
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
