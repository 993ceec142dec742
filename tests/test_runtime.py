"""The runtime: what `auto` means for device and precision, the one autocast, the packed planner's
condition, the thread count."""
import warnings

import pytest
import torch

from planet.config import Config, ConfigError, ModelConfig, PlannerConfig, RuntimeConfig
from planet.model import WorldModel
from planet.planner import Planner
from planet.runtime import BF16_MIN_SPEEDUP, PLAIN, Runtime, matmul_seconds, resolve_device, resolve_precision

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
    assert Runtime(CPU, bf16=True).auto_choice() == "runtime.precision: auto -> bf16 on this cpu"


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


def test_a_bf16_planner_refuses_a_belief_on_another_device_than_its_runtime():
    model = WorldModel(ModelConfig(), action_size=1, image_size=64)
    planner = Planner(model, PlannerConfig(), Runtime(torch.device("cuda"), bf16=True))
    with pytest.raises(ValueError, match="the planner's bf16 runtime is on cuda, the belief on cpu"):
        planner.plan(model.rssm.initial(1, CPU))


@pytest.mark.parametrize("cuda", [False, True])
def test_devices_resolve_to_what_torch_sees(monkeypatch, cuda):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert resolve_device("auto") == torch.device("cuda" if cuda else "cpu")
    assert resolve_device("cpu") == CPU
    if cuda:
        assert resolve_device("cuda") == torch.device("cuda")
    else:
        with pytest.raises(ConfigError, match="^runtime.device: cuda was asked for but torch sees no CUDA device on "
                                              "this machine$"):
            resolve_device("cuda")


@pytest.mark.parametrize("supported", [False, True])
def test_auto_on_cuda_is_bf16_where_the_device_supports_it_without_probing(monkeypatch, supported):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: supported)

    def no_probe(dtype):
        raise AssertionError("probed a CUDA device with a CPU matmul")
    assert resolve_precision("auto", torch.device("cuda"), no_probe) == ("bf16" if supported else "fp32")


def test_a_lead_of_exactly_the_minimum_speedup_is_enough_for_bf16():
    assert resolve_precision("auto", CPU, probe_with(BF16_MIN_SPEEDUP, 1.0)) == "bf16"


def test_the_probe_times_a_matmul_in_seconds():
    assert 0 < matmul_seconds(torch.float32, repeats=1) < 10


def test_packed_planning_is_for_a_cpu_in_bf16_with_packing_on_where_onednn_can(monkeypatch):
    monkeypatch.setattr("planet.runtime.packed_rollout_available", lambda: True)
    assert Runtime(CPU, bf16=True).packs_rollout()
    assert not PLAIN.packs_rollout()
    assert not Runtime(CPU, bf16=True, pack=False).packs_rollout()
    assert not Runtime(torch.device("cuda"), bf16=True).packs_rollout()
    monkeypatch.setattr("planet.runtime.packed_rollout_available", lambda: False)
    assert not Runtime(CPU, bf16=True).packs_rollout()


def test_bf16_autocast_on_cuda_is_bf16_not_cudas_float16_default():
    """fp16 would need a gradient scaler; the runtime asks for bf16 by name on every device. Checked on
    the context object, which records its dtype even where CUDA is missing (there it only warns)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        context = Runtime(torch.device("cuda"), bf16=True).autocast()
    assert context.fast_dtype == torch.bfloat16
