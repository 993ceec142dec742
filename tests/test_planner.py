from types import SimpleNamespace

import pytest
import torch

from planet.config import PlannerConfig
from planet.model import LatentState, WorldModel
from planet.planner import Planner, imagine_reward, refine, sample_candidates, shift_plan
from planet.runtime import Runtime


class ToyRSSM:
    """belief = [last action, target]; the reward is -(last action - target)^2, so the optimum is
    to play the target at every step (known answer)."""

    def imagine_step(self, latent, action, noise):
        belief = torch.cat([action, latent.belief[:, 1:]], dim=-1)
        return LatentState(belief, latent.state + 0 * noise), None


class ToyModel:
    def __init__(self):
        self.rssm = ToyRSSM()
        self.action_size = 1
        self.cfg = SimpleNamespace(state_size=1)

    @staticmethod
    def features(latent):
        return latent.belief

    @staticmethod
    def reward(features):
        return -(features[..., 0] - features[..., 1]) ** 2


def test_finds_the_known_optimum_for_several_envs_at_once():
    targets = torch.tensor([[0.3], [-0.6], [0.95]])
    latent = LatentState(torch.cat([torch.zeros(3, 1), targets], -1), torch.zeros(3, 1))
    planner = Planner(ToyModel(), PlannerConfig(candidates=500, top_k=50, horizon=4, iterations=8))
    action = planner.plan(latent, torch.Generator().manual_seed(0))
    assert action.shape == (3, 1)
    assert torch.allclose(action, targets, atol=0.03), action


def test_actions_stay_in_range_and_plans_are_seeded(tiny_model_cfg, device):
    model = WorldModel(tiny_model_cfg, 2, 16).to(device)
    planner = Planner(model, PlannerConfig(candidates=64, top_k=8, horizon=5, iterations=3))
    latent = LatentState(torch.randn(4, 16, device=device), torch.randn(4, 4, device=device))
    a = planner.plan(latent, torch.Generator(device).manual_seed(1))
    b = planner.plan(latent, torch.Generator(device).manual_seed(1))
    assert a.shape == (4, 2) and torch.equal(a, b) and a.abs().max() <= 1 and a.device.type == device.type


def test_batched_planning_equals_one_env_at_a_time(tiny_model_cfg):
    """Env e's plan must not depend on the other envs in the batch (given the same noise)."""
    model = WorldModel(tiny_model_cfg, 1, 16)
    latent = LatentState(torch.randn(2, 16), torch.randn(2, 4))
    g = torch.Generator().manual_seed(0)
    action_noise = torch.randn(3, 4, 2, 32, 1, generator=g)
    state_noise = torch.randn(3, 4, 2 * 32, 4, generator=g)
    with torch.no_grad():
        init = torch.randn(4, 2, 1, generator=g).clamp(-1, 1)
        both = refine(model, latent, action_noise, state_noise, 5, init)
        second = refine(model, LatentState(latent.belief[1:], latent.state[1:]), action_noise[:, :, 1:],
                        state_noise[:, :, 32:], 5, init[:, 1:])
    assert torch.allclose(both[:, 1], second[:, 0], atol=1e-5)


def test_refinement_loop_compiles_with_fullgraph(tiny_model_cfg):
    """The whole CEM loop is one graph (what CUDA graphs need); fullgraph=True raises on any graph
    break, so getting an answer proves it."""
    model = WorldModel(tiny_model_cfg, 1, 16)
    latent = LatentState(torch.randn(2, 16), torch.randn(2, 4))
    g = torch.Generator().manual_seed(0)
    action_noise, state_noise = torch.randn(2, 3, 2, 8, 1, generator=g), torch.randn(2, 3, 16, 4, generator=g)
    init = torch.zeros(3, 2, 1)
    with torch.no_grad():
        compiled = torch.compile(refine, fullgraph=True)(model, latent, action_noise, state_noise, 3, init)
        eager = refine(model, latent, action_noise, state_noise, 3, init)
    assert torch.allclose(compiled, eager, atol=1e-5)


@pytest.mark.parametrize("bf16", [False, True])
def test_a_compiled_planner_plans_like_the_eager_one(tiny_model_cfg, bf16):
    torch.manual_seed(0)  # bf16 rounding can move a candidate across the elite cut for some weights: fix them
    model = WorldModel(tiny_model_cfg, 1, 16)
    latent = LatentState(torch.randn(2, 16), torch.randn(2, 4))
    cfg = PlannerConfig(candidates=16, top_k=4, horizon=2, iterations=2)
    # pack=False: on a CPU in bf16 the planner would otherwise roll out on packed weights, uncompiled
    eager = Planner(model, cfg, Runtime(bf16=bf16, pack=False))
    compiled = Planner(model, cfg, Runtime(bf16=bf16, compile=True, pack=False))
    torch._dynamo.reset()  # forget graphs compiled by other tests, under other autocast settings
    with torch._dynamo.config.patch(error_on_recompile=True):  # every step has the same dtypes: one compile
        a = compiled.plan_sequence(latent, torch.Generator().manual_seed(0))
        compiled.plan_sequence(latent, torch.Generator().manual_seed(1))
    b = eager.plan_sequence(latent, torch.Generator().manual_seed(0))
    assert torch.allclose(a, b, atol=5e-2 if bf16 else 1e-5)


def test_shift_plan_drops_the_executed_action_and_appends_zero():
    plan = torch.arange(6.0).view(3, 2, 1)  # (T, E, A)
    assert torch.equal(shift_plan(plan), torch.tensor([[[2.0], [3.0]], [[4.0], [5.0]], [[0.0], [0.0]]]))


def test_the_search_starts_from_the_given_plan():
    """top_k = candidates and one iteration: the refit mean is the mean of all (clipped) samples,
    which sits near where the search started: zero, or the warm start."""
    latent = LatentState(torch.zeros(1, 2), torch.zeros(1, 1))
    planner = Planner(ToyModel(), PlannerConfig(candidates=4000, top_k=4000, horizon=3, iterations=1))
    g = torch.Generator().manual_seed(0)
    cold = planner.plan_sequence(latent, g)
    warm = planner.plan_sequence(latent, g, torch.full((3, 1, 1), 0.6))
    assert cold.abs().max() < 0.05
    assert (warm > 0.35).all() and (warm < 0.6).all()  # clipping at 1 pulls the mean of N(0.6, 1) in


class NoisyToyRSSM(ToyRSSM):
    """As ToyRSSM, plus a zero-mean stochastic state whose spread grows with |action|."""

    def imagine_step(self, latent, action, noise):
        latent, _ = super().imagine_step(latent, action, noise)
        return LatentState(latent.belief, 3 * action.abs() * noise), None


class NoisyToyModel(ToyModel):
    """Reward -(action - target)^2 + state: its expectation still peaks at the target."""

    def __init__(self):
        super().__init__()
        self.rssm = NoisyToyRSSM()

    @staticmethod
    def features(latent):
        return torch.cat([latent.belief, latent.state], -1)

    @staticmethod
    def reward(features):
        return -(features[..., 0] - features[..., 1]) ** 2 + features[..., 2]


def test_rollouts_sample_the_prior_state_once_per_candidate_and_step():
    """The paper's rollouts draw s ~ p(s | h) for every candidate at every step: here the state is
    3 |a| times that draw, so the states seen are standard normal draws once divided by 3 |a|."""
    model = NoisyToyModel()
    seen = []
    reward = model.reward
    model.reward = lambda features: seen.append(features.clone()) or reward(features)
    latent = LatentState(torch.zeros(1, 2), torch.zeros(1, 1))
    cfg = PlannerConfig(candidates=500, top_k=8, horizon=2, iterations=1)
    Planner(model, cfg).plan(latent, torch.Generator().manual_seed(0))
    features = torch.cat(seen)  # (T * N, 3): last action, target, state
    draws = features[:, 2] / (3 * features[:, 0].abs())
    assert len(draws.unique()) == len(draws)  # a fresh draw for every candidate and step
    assert abs(draws.mean()) < 0.15 and abs(draws.std() - 1) < 0.1


def test_candidates_are_mean_plus_std_times_noise_clipped_to_the_action_box():
    mean = torch.tensor([0.5, -0.2]).view(2, 1, 1, 1)  # (T, E, 1, A)
    std = torch.tensor([0.4, 2.0]).view(2, 1, 1, 1)
    noise = torch.tensor([[1.0, -1.0, 2.0], [0.1, -0.3, 1.0]]).view(2, 1, 3, 1)  # (T, E, N, A)
    expected = torch.tensor([[0.9, 0.1, 1.0], [0.0, -0.8, 1.0]]).view(2, 1, 3, 1)
    assert torch.allclose(sample_candidates(mean, std, noise), expected)


def test_the_rollout_runs_as_the_runtime_says_bf16_under_autocast_or_fp32_without():
    """Any step sees the runtime's precision: latents in bf16 and autocast on, or fp32 and off."""
    seen = []

    def recording_step(model, latent, action, noise):
        seen.append((latent.belief.dtype, latent.state.dtype, torch.is_autocast_enabled("cpu")))
        belief = torch.cat([action.to(latent.belief.dtype), latent.belief[:, 1:]], dim=-1)
        return LatentState(belief, latent.state), ToyModel.reward(belief).float()

    latent = LatentState(torch.tensor([[0.0, 0.5]]), torch.zeros(1, 1))
    cfg = PlannerConfig(candidates=32, top_k=4, horizon=2, iterations=2)
    for runtime, expected in ((Runtime(bf16=True), (torch.bfloat16, torch.bfloat16, True)),
                              (Runtime(), (torch.float32, torch.float32, False))):
        seen.clear()
        plan = Planner(ToyModel(), cfg, runtime, step=recording_step).plan_sequence(latent, torch.Generator())
        assert plan.dtype == torch.float32 and plan.shape == (2, 1, 1)
        assert seen and set(seen) == {expected}


def test_only_the_plain_step_takes_the_packed_path(monkeypatch, tiny_model_cfg):
    monkeypatch.setattr("planet.runtime.packed_rollout_available", lambda: True)
    model = WorldModel(tiny_model_cfg, 1, 16)
    cfg = PlannerConfig(candidates=16, top_k=4, horizon=2, iterations=2)
    assert Planner(model, cfg, Runtime(bf16=True)).packs
    assert not Planner(model, cfg, Runtime(bf16=True), step=lambda *args: None).packs
    assert not Planner(model, cfg, Runtime()).packs
    assert Planner(model, cfg, Runtime()).rollout(8) == (model, imagine_reward)
