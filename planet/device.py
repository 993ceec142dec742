"""Device resolution: `auto | cpu | cuda`."""
from __future__ import annotations

import torch

from planet.config import ConfigError


def resolve_device(name: str) -> torch.device:
    """auto picks CUDA when present; asking for cuda without it is a user error, not a fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("runtime.device: cuda was asked for but torch sees no CUDA device on this machine")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"runtime.device: must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)
