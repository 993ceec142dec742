"""Device and precision resolution (`auto | cpu | cuda`, `auto | fp32 | bf16`) and the process's malloc setting."""
from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import statistics
import time
from collections.abc import Callable

import torch

from planet.config import Config, ConfigError

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

BF16_MIN_SPEEDUP = 1.1
"""auto picks bf16 on a CPU only when it is at least this much faster: fp32 is the exact one."""


def resolve_device(name: str) -> torch.device:
    """auto picks CUDA when present; asking for cuda without it is a user error, not a fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("runtime.device: cuda was asked for but torch sees no CUDA device on this machine")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"runtime.device: must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def matmul_seconds(dtype: torch.dtype, repeats: int = 5) -> float:
    """Median time of one CPU matmul the size of a batched plan step (4000 x 400 @ 400 x 400).
    Draws from its own generator: probing must not move the global RNG that initialises the model."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 400, generator=generator).to(dtype)
    b = torch.randn(400, 400, generator=generator).to(dtype)
    times = []
    for i in range(repeats + 2):  # two warm-up calls
        start = time.perf_counter()
        torch.mm(a, b)
        if i >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def resolve_precision(precision: str, device: torch.device,
                      probe: Callable[[torch.dtype], float] = matmul_seconds) -> str:
    """fp32 or bf16. auto: bf16 on CUDA where supported; on a CPU, the faster of the two by `probe`
    (bf16 needs a `BF16_MIN_SPEEDUP` lead), because CPUs differ: bf16 was the faster on this project's
    AMD EPYC, and its matmuls are 1.7x slower than fp32 on a Xeon that has avx512_bf16 but no AMX."""
    if precision in ("fp32", "bf16"):
        return precision
    if precision != "auto":
        raise ConfigError(f"runtime.precision: must be auto, fp32 or bf16, got {precision!r}")
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    fp32, bf16 = probe(torch.float32), probe(torch.bfloat16)
    return "bf16" if fp32 >= BF16_MIN_SPEEDUP * bf16 else "fp32"


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the kernel.

    A train step allocates and frees tensors of tens of MB (the convolutions' activations over all
    T*B frames). By default glibc serves those with mmap and unmaps them on free, so the next step
    faults every page in again and the kernel zeroes it: about 140k page faults and 12% of a step's
    CPU time in the kernel on a 2-core AMD EPYC. Serving everything from the heap and never trimming
    it removes that (docs/performance.md has the figures). It changes no result;
    the process keeps its peak memory until it exits. Process-wide, so only entry points call it.
    Returns False where the C library is not glibc (then nothing changes)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success. The trim threshold is an int: 2**31 - 1 bytes is "never" here.
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def with_resolved_precision(cfg: Config, device: torch.device) -> Config:
    """`cfg` with `runtime.precision: auto` resolved for `device` (what a run computes with)."""
    if cfg.runtime.precision != "auto":
        return cfg
    precision = resolve_precision(cfg.runtime.precision, device)
    return dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, precision=precision))
