import numpy as np
import torch

from planet.agent import Agent, run_episodes
from planet.config import EnvConfig, PlannerConfig
from planet.envs import PixelEnv
from planet.model import WorldModel
from planet.planner import Planner


def test_planning_agent_runs_envs_side_by_side(tiny_model_cfg):
    envs = [PixelEnv(EnvConfig(id="PlanetCounter-v0", image_size=16, action_repeat=2)) for _ in range(3)]
    model = WorldModel(tiny_model_cfg, 1, 16)
    planner = Planner(model, PlannerConfig(candidates=16, top_k=4, horizon=3, iterations=2))
    agent = Agent(model, planner, torch.Generator().manual_seed(0))
    episodes = run_episodes(envs, [1, 2, 3], agent, exploration_noise=0.3)
    assert [len(e) for e in episodes] == [6, 6, 6]
    assert all(e.obs.shape == (7, 16, 16, 3) and np.abs(e.action).max() <= 1 for e in episodes)
    again = run_episodes(envs, [1, 2, 3], Agent(model, planner, torch.Generator().manual_seed(0)), 0.3)
    assert all(np.array_equal(a.action, b.action) for a, b in zip(episodes, again))


class RecordingPlanner(Planner):
    def plan_sequence(self, latent, generator=None, init_mean=None):
        self.starts.append(init_mean)
        plan = super().plan_sequence(latent, generator, init_mean)
        self.plans.append(plan)
        return plan


def test_exploration_noise_only_when_asked(tiny_model_cfg):
    """Collection adds Gaussian noise to the plan's first action; evaluation (noise 0) acts on it exactly."""
    model = WorldModel(tiny_model_cfg, 1, 16)
    planner = RecordingPlanner(model, PlannerConfig(candidates=16, top_k=4, horizon=3, iterations=2))
    acts = []
    for noise in (0.0, 0.5):
        planner.starts, planner.plans = [], []
        agent = Agent(model, planner, torch.Generator().manual_seed(0))
        agent.reset(1)
        agent.observe(np.zeros((1, 16, 16, 3), np.uint8))
        acts.append(agent.act(noise))
        first = planner.plans[-1][0].clamp(-1, 1).numpy()  # (1, A): what the planner chose
        if noise == 0:
            assert np.array_equal(acts[-1], first)  # no noise at all when evaluating
        else:
            assert not np.allclose(acts[-1], first)
    assert not np.allclose(acts[0], acts[1])


def test_warm_start_hands_each_plan_the_last_one_shifted_and_resets_per_episode(tiny_model_cfg):
    model = WorldModel(tiny_model_cfg, 1, 16)
    envs = [PixelEnv(EnvConfig(id="PlanetCounter-v0", image_size=16, action_repeat=2)) for _ in range(2)]
    for warm in (False, True):
        planner = RecordingPlanner(model, PlannerConfig(candidates=16, top_k=4, horizon=3, iterations=2,
                                                        warm_start=warm))
        planner.starts, planner.plans = [], []
        agent = Agent(model, planner, torch.Generator().manual_seed(0))
        run_episodes(envs, [1, 2], agent)
        run_episodes(envs, [3, 4], agent)
        steps = len(planner.plans) // 2
        assert planner.starts[0] is None and planner.starts[steps] is None  # a new episode starts cold
        for i in list(range(1, steps)) + list(range(steps + 1, 2 * steps)):
            if warm:
                assert torch.equal(planner.starts[i][:-1], planner.plans[i - 1][1:])
                assert torch.equal(planner.starts[i][-1], torch.zeros(2, 1))
            else:
                assert planner.starts[i] is None
