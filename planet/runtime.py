"""How a process computes, decided once: `Runtime` (device, bf16 autocast or fp32, compiled and packed
planning, threads) resolved from `runtime:` in the params (`auto | cpu | cuda`, `auto | fp32 | bf16`).
The maths never sees these names: it receives a `Runtime` or the autocast context that
`Runtime.autocast` makes, the one place that decides on autocast."""
from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from planet.config import Config, ConfigError, RuntimeConfig
from planet.packed import packed_rollout_available

Probe = Callable[[torch.dtype], float]
"""A dtype -> the seconds a matmul takes in it."""

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


def resolve_precision(precision: str, device: torch.device, probe: Probe = matmul_seconds) -> str:
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


@dataclass(frozen=True)
class Runtime:
    """What the engine computes on and how. `bf16`: matmuls and convolutions under bf16 autocast
    (distributions and losses stay fp32); `compile`: compile the planner's rollout step; `pack`: on a
    CPU in bf16, plan on weights packed for oneDNN (`planet.packed`); `threads`: torch's CPU threads
    (0: torch's default). The default is the plain path: a CPU, fp32, eager."""

    device: torch.device = torch.device("cpu")
    bf16: bool = False
    compile: bool = False
    pack: bool = True
    threads: int = 0

    @classmethod
    def resolve(cls, cfg: RuntimeConfig, probe: Probe = matmul_seconds) -> Runtime:
        """`runtime:` params -> the runtime on this machine, `auto` decided. Sets torch's thread count
        for the process first (`runtime.threads`, unless 0): on a CPU, `precision: auto` times `probe`
        on those threads."""
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        device = resolve_device(cfg.device)
        return cls(device, resolve_precision(cfg.precision, device, probe) == "bf16", cfg.compile,
                   threads=cfg.threads)

    @property
    def precision(self) -> str:
        """fp32 or bf16, as params and checkpoints name it."""
        return "bf16" if self.bf16 else "fp32"

    def auto_choice(self) -> str:
        """What `precision: auto` chose here, as a run's message says it."""
        return f"runtime.precision: auto -> {self.precision} on this {self.device.type}"

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on this runtime's device, or nothing in fp32."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def packs_rollout(self) -> bool:
        """Whether the planner rolls out on packed bf16 weights: a CPU in bf16 with oneDNN's bf16 path."""
        return self.pack and self.bf16 and self.device.type == "cpu" and packed_rollout_available()

    def applied_to(self, cfg: Config) -> Config:
        """`cfg` with the precision this runtime computes in, `auto` no more (what checkpoints record:
        a resumed run keeps it)."""
        return dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, precision=self.precision))


PLAIN = Runtime()
"""A CPU, fp32, eager: the readable path every fast one is tested against."""
