"""Benchmark: time one train step and one CEM plan at the notebook's sizes (`python -m planet.bench`).

Flags: [--device cpu] [--precision auto|fp32|bf16] [--repeats 5] [--no-compile] [--no-pack]
[--no-keep-freed-memory] [--plain]. `--plain` turns every speed-up off: the in-repository baseline.

Prints one JSON line with the same keys as ../shared/bench/seed_timing.py: one train step at batch
16 x seq 25 with overshooting depth 5, and one CEM plan at 1000 x 12 x 10, at the notebook's sizes
(`planet.notebook`).
Medians over `--repeats` after warm-up. A benchmark, not a test: machines are noisy.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Callable

import torch

from planet.config import RuntimeConfig
from planet.loss import TensorBatch, make_optimizer, train_step
from planet.memory import keep_freed_memory
from planet.model import WorldModel, parameter_count
from planet.notebook import notebook_config
from planet.planner import Planner
from planet.runtime import Runtime

# The notebook's sizes, which the timings are defined on (the code defaults are the learning config).
NOTEBOOK = notebook_config()


def median_ms(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 2) -> float:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="auto: as runtime.precision auto resolves on this machine (default)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="torch.compile the planner's rollout step, as runtime.compile does (default: on)")
    parser.add_argument("--pack", action=argparse.BooleanOptionalAction, default=True,
                        help="on a CPU in bf16, plan on weights packed for oneDNN (planet.packed), as the "
                             "pipeline does (default: on)")
    parser.add_argument("--keep-freed-memory", action=argparse.BooleanOptionalAction, default=True,
                        help="keep freed memory in glibc's heap, as the pipeline's stages do (default: on)")
    parser.add_argument("--plain", action="store_true",
                        help="the plain path, every speed-up off (fp32, no compile, no packing, glibc's default "
                             "malloc): the baseline the speed-ups are measured against")
    args = parser.parse_args(argv)
    if args.plain:
        args.precision, args.compile, args.pack, args.keep_freed_memory = "fp32", False, False, False
    kept = keep_freed_memory() if args.keep_freed_memory else False
    runtime = dataclasses.replace(
        Runtime.resolve(RuntimeConfig(device=args.device, precision=args.precision, threads=args.threads,
                                     compile=args.compile)),
        pack=args.pack)
    device = runtime.device
    generator = torch.Generator(device).manual_seed(0)
    torch.manual_seed(0)

    model = WorldModel(NOTEBOOK.model, action_size=1, image_size=64).to(device)
    train_cfg = NOTEBOOK.train
    optimizer = make_optimizer(model, train_cfg)
    steps, batch_size = NOTEBOOK.train.seq_len, NOTEBOOK.train.batch_size  # 25, 16
    batch = TensorBatch(
        obs=torch.randint(0, 256, (steps, batch_size, 64, 64, 3), dtype=torch.uint8, device=device),
        action=torch.rand(steps, batch_size, 1, device=device) * 2 - 1,
        reward=torch.randn(steps, batch_size, device=device),
    )
    train_ms = median_ms(lambda: train_step(model, optimizer, batch, train_cfg, generator, runtime.autocast()),
                         device, args.repeats)

    planner = Planner(model, NOTEBOOK.planner, runtime)
    latent = model.rssm.initial(1, device)
    plan_ms = median_ms(lambda: planner.plan(latent, generator), device, args.repeats)
    print(json.dumps({
        "implementation": "planet",
        "device": str(device),
        "precision": runtime.precision,
        "threads": torch.get_num_threads(),
        "compile": args.compile,
        "packed": planner.packs,
        "keep_freed_memory": kept,
        "parameters": parameter_count(model),
        "train_step_ms": round(train_ms, 2),
        "plan_ms": round(plan_ms, 2),
    }))


if __name__ == "__main__":
    main()
