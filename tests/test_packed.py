import pytest
import torch

from planet.config import ModelConfig, PlannerConfig
from planet.model import LatentState, WorldModel
from planet.packed import PackedRollout, pack_rollout, packed_imagine_reward, packed_rollout_available
from planet.planner import Planner, imagine_reward, score_candidates
from planet.runtime import PLAIN, Runtime

pytestmark = pytest.mark.skipif(not packed_rollout_available(), reason="this CPU has no oneDNN bf16 path")

BF16 = Runtime(bf16=True)  # on the CPU, packing as the default does


def random_model(cfg: ModelConfig) -> WorldModel:
    torch.manual_seed(0)
    model = WorldModel(cfg, 2, 16)
    with torch.no_grad():  # away from the initialisation, so every layer's bias counts
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model


@pytest.mark.parametrize("size", ["tiny", "notebook"])
def test_a_packed_step_is_the_models_step_in_bf16(tiny_model_cfg, size):
    model = random_model(tiny_model_cfg if size == "tiny" else ModelConfig())
    rows, cfg = 64, model.cfg
    latent = LatentState(torch.randn(rows, cfg.belief_size).bfloat16(), torch.randn(rows, cfg.state_size).bfloat16())
    action, noise = torch.rand(rows, 2) * 2 - 1, torch.randn(rows, cfg.state_size)
    with torch.no_grad():
        packed_latent, packed_reward = packed_imagine_reward(pack_rollout(model, rows), latent, action, noise)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            latent, reward = imagine_reward(model, latent, action, noise)
    assert packed_latent.belief.dtype == packed_latent.state.dtype == torch.bfloat16
    assert packed_reward.dtype == torch.float32 and packed_reward.shape == (rows,)
    # the same maths; only where bf16 rounds differs (eager elementwise ops against autocast's)
    for packed, reference in [(packed_latent.belief, latent.belief), (packed_latent.state, latent.state),
                              (packed_reward, reward)]:
        scale = reference.float().abs().max()
        assert (packed.float() - reference.float()).abs().max() <= 0.02 * scale, (packed, reference)


def test_packed_and_autocast_rollouts_score_candidates_alike(tiny_model_cfg):
    model = random_model(tiny_model_cfg)
    envs, n, horizon = 2, 32, 5
    g = torch.Generator().manual_seed(0)
    latent = LatentState(torch.randn(envs * n, 16, generator=g).bfloat16(),
                         torch.randn(envs * n, 4, generator=g).bfloat16())
    actions = torch.randn(horizon, envs, n, 2, generator=g).clamp(-1, 1)
    noise = torch.randn(horizon, envs * n, 4, generator=g)
    with torch.no_grad():
        packed = score_candidates(pack_rollout(model, envs * n), latent, actions, noise, packed_imagine_reward)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            reference = score_candidates(model, latent, actions, noise)
    assert packed.shape == (envs, n)
    assert (packed - reference).abs().max() <= 0.02 * reference.abs().max()
    # the ranking CEM refits to: the packed top quarter is almost all in the reference's top third
    top = packed.topk(n // 4, dim=1).indices
    in_reference_top = torch.stack([torch.isin(top[e], reference[e].topk(n // 3).indices) for e in range(envs)])
    assert in_reference_top.float().mean() >= 0.9


def test_in_bf16_on_a_cpu_the_planner_plans_on_packed_weights_as_autocast_would(tiny_model_cfg):
    """The seam picks the packed step in bf16 on a CPU, and the plan it makes is autocast's (the same
    elites: bf16 rounding moves no candidate across the cut here); in fp32 nothing is packed."""
    model = random_model(tiny_model_cfg)
    cfg = PlannerConfig(candidates=256, top_k=32, horizon=4, iterations=3)
    latent = LatentState(torch.randn(2, 16), torch.randn(2, 4))
    assert isinstance(Planner(model, cfg, BF16).rollout(8)[0], PackedRollout)
    assert Planner(model, cfg, Runtime(bf16=True, pack=False)).rollout(8) == (model, imagine_reward)
    assert Planner(model, cfg, PLAIN).rollout(8) == (model, imagine_reward)

    def plan(bf16, pack):
        planner = Planner(model, cfg, Runtime(bf16=bf16, pack=pack))
        return planner.plan_sequence(latent, torch.Generator().manual_seed(0))

    assert torch.equal(plan(True, True), plan(True, False))
    assert torch.equal(plan(False, True), plan(False, False))


def test_the_planner_packs_the_weights_it_has_now(tiny_model_cfg):
    """Packed weights are a snapshot: after a gradient step the next plan must see the new weights."""
    model = random_model(tiny_model_cfg)
    cfg = PlannerConfig(candidates=64, top_k=8, horizon=4, iterations=3)
    planner = Planner(model, cfg, BF16)
    latent = LatentState(torch.randn(2, 16), torch.randn(2, 4))
    before = planner.plan_sequence(latent, torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.reward.net[-1].bias.add_(1.0)  # moves every return by the same amount: same plan
        model.reward.net[-1].weight.mul_(-1.0)  # turns the reward around: another plan
    after = planner.plan_sequence(latent, torch.Generator().manual_seed(0))
    fresh = Planner(model, cfg, BF16).plan_sequence(latent, torch.Generator().manual_seed(0))
    assert torch.equal(after, fresh) and not torch.allclose(after, before, atol=0.1)
