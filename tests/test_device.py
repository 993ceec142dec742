"""Device and precision resolution: what `auto` means, and that the core refuses an unresolved one."""
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from planet.config import Config, ConfigError, ModelConfig, PlannerConfig, RuntimeConfig
from planet.device import resolve_device, resolve_precision
from planet.model import WorldModel
from planet.planner import Planner
from stages.common import machine_config

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


def test_machine_config_resolves_only_the_precision(capsys):
    cfg = Config(runtime=RuntimeConfig(precision="auto", device="cpu"))
    resolved = machine_config(cfg, CPU)
    assert resolved.runtime.precision in ("fp32", "bf16")
    assert resolved.fingerprint("train", "planner") == cfg.fingerprint("train", "planner")
    assert cfg.runtime.precision == "auto"  # the params' value is what fingerprints and MLflow params see
    assert "runtime.precision: auto -> " in capsys.readouterr().out


def test_the_planner_refuses_an_unresolved_precision():
    model = WorldModel(ModelConfig(), action_size=1, image_size=64)
    with pytest.raises(ValueError, match="resolve auto first"):
        Planner(model, PlannerConfig(), "auto")


# Allocates and frees a 64 MB buffer 40 times and prints the page faults that cost; argv[1] says
# whether to call keep_freed_memory first. A subprocess, because the setting is process-wide.
_FAULTS = """
import resource, sys, torch
from planet.device import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "1" else False
torch.ones(16 << 20)  # first touch: faulted in either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):
    torch.ones(16 << 20)  # 64 MB of float32, freed at once
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_keep_freed_memory_stops_big_tensors_from_faulting_their_pages_in_again():
    def faults(keep: str) -> tuple[str, int]:
        out = subprocess.run([sys.executable, "-c", _FAULTS, keep], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).parents[1]).stdout.split()
        return out[0], int(out[1])

    kept, with_keep = faults("1")
    _, without = faults("0")
    assert kept == "True"
    buffer_pages = (64 << 20) // resource.getpagesize()
    assert without > 20 * buffer_pages  # the default: glibc maps and unmaps each of the 40 buffers
    # Kept: the heap's pages are reused. Not always zero: CI's machine counted 4 buffers' worth (cause
    # not known; a kernel's NUMA balancing, which unmaps pages to sample them, would do it), so compare.
    assert with_keep < without / 4
