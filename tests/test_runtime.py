"""The runtime: what `auto` means for device and precision, the one autocast, and the process's malloc."""
import ctypes
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from planet.config import Config, ConfigError, ModelConfig, PlannerConfig, RuntimeConfig
from planet.model import WorldModel
from planet.planner import Planner
from planet.runtime import PLAIN, Runtime, resolve_device, resolve_precision

CPU = torch.device("cpu")


def probe_with(fp32_s, bf16_s):
    return lambda dtype: {torch.float32: fp32_s, torch.bfloat16: bf16_s}[dtype]


def test_explicit_precision_is_kept_without_probing():
    def no_probe(dtype):
        raise AssertionError("probed although the precision was given")
    assert resolve_precision("fp32", CPU, no_probe) == "fp32"
    assert resolve_precision("bf16", CPU, no_probe) == "bf16"


@pytest.mark.parametrize("fp32_s, bf16_s, expected", [
    (2.0, 1.0, "bf16"),   # AMD Zen 4-like: bf16 twice as fast
    (1.0, 1.4, "fp32"),   # Xeon without AMX: bf16 slower
    (1.05, 1.0, "fp32"),  # a 5% lead is within noise: keep the exact one
])
def test_auto_on_cpu_picks_by_the_probe(fp32_s, bf16_s, expected):
    assert resolve_precision("auto", CPU, probe_with(fp32_s, bf16_s)) == expected


def test_auto_with_the_real_probe_gives_a_usable_precision_and_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    assert resolve_precision("auto", CPU) in ("fp32", "bf16")
    assert torch.equal(torch.get_rng_state(), before)  # else auto and fp32 would initialise models differently


def test_unknown_names_are_config_errors():
    with pytest.raises(ConfigError, match="runtime.precision: must be auto, fp32 or bf16"):
        resolve_precision("fp16", CPU)
    with pytest.raises(ConfigError, match="runtime.device: must be auto, cpu or cuda"):
        resolve_device("tpu")


def test_the_runtime_resolves_the_params_once_and_only_the_probe_decides_auto():
    def no_probe(dtype):
        raise AssertionError("probed although the precision was given")
    assert Runtime.resolve(RuntimeConfig(device="cpu", precision="bf16", compile=False), no_probe) == Runtime(
        CPU, bf16=True, compile=False)
    assert Runtime.resolve(RuntimeConfig(device="cpu", precision="fp32"), no_probe) == Runtime(CPU, compile=True)
    auto = RuntimeConfig(device="cpu", precision="auto")
    assert Runtime.resolve(auto, probe_with(2.0, 1.0)).precision == "bf16"
    assert Runtime.resolve(auto, probe_with(1.0, 1.4)).precision == "fp32"


def test_autocast_is_on_in_bf16_alone_and_on_the_runtimes_device():
    with PLAIN.autocast():
        assert not torch.is_autocast_enabled("cpu")
    with Runtime(CPU, bf16=True).autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16
    assert not torch.is_autocast_enabled("cpu")


def test_a_runtime_applied_to_a_config_sets_only_its_precision():
    cfg = Config(runtime=RuntimeConfig(precision="auto", device="auto"))
    applied = Runtime(CPU, bf16=True).applied_to(cfg)
    assert applied.runtime == RuntimeConfig(precision="bf16", device="auto")
    assert applied.fingerprint("train", "planner") == cfg.fingerprint("train", "planner")


def test_resolving_sets_the_thread_count_before_the_probe_times_on_it():
    before = torch.get_num_threads()
    seen = []

    def probe(dtype):
        seen.append(torch.get_num_threads())
        return 1.0
    try:
        runtime = Runtime.resolve(RuntimeConfig(device="cpu", precision="auto", threads=1), probe)
        assert runtime.threads == 1 and torch.get_num_threads() == 1 and seen == [1, 1]
    finally:
        torch.set_num_threads(before)


def test_the_planner_refuses_a_belief_on_another_device_than_its_runtime():
    model = WorldModel(ModelConfig(), action_size=1, image_size=64)
    planner = Planner(model, PlannerConfig(), Runtime(torch.device("cuda")))
    with pytest.raises(ValueError, match="the planner's runtime is on cuda, the belief on cpu"):
        planner.plan(model.rssm.initial(1, CPU))


# glibc's own accounting (mallinfo2): the heap's releasable top after a 64 MB block is allocated and
# freed, then the bytes in mmapped blocks and in use in the heap that a 64 MB tensor adds. argv[1] says whether to
# call keep_freed_memory first. A subprocess, because the setting is process-wide.
_MALLINFO = """
import ctypes, sys, torch
from planet.runtime import keep_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks "
                                               "fordblks keepcost").split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype, libc.malloc.restype, libc.free.argtypes = Info, ctypes.c_void_p, [ctypes.c_void_p]
kept = keep_freed_memory() if sys.argv[1] == "1" else False
libc.free(libc.malloc(64 << 20))
releasable = libc.mallinfo2().keepcost
before = libc.mallinfo2()
buffer = torch.ones(16 << 20)  # 64 MB of float32
during = libc.mallinfo2()
print(kept, during.hblkhd - before.hblkhd, during.uordblks - before.uordblks, releasable)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(None), "mallinfo2"),
                    reason="glibc's malloc (2.33 or later)")
def test_keep_freed_memory_serves_big_tensors_from_the_heap_and_keeps_them_there():
    def accounting(keep: str) -> tuple[str, int, int, int]:
        out = subprocess.run([sys.executable, "-c", _MALLINFO, keep], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).parents[1]).stdout.split()
        return out[0], *(int(v) for v in out[1:])

    mb64 = 64 << 20
    # glibc's default: a block this big is its own mmap, unmapped again on free, so the next train step
    # faults its pages in anew.
    _, mapped, _, _ = accounting("0")
    assert mapped >= mb64
    kept, mapped, heap_used, releasable = accounting("1")
    assert kept == "True"
    assert mapped == 0 and heap_used >= mb64  # served from the heap
    assert releasable >= mb64  # and a freed block at the heap's top stays there, not handed back
