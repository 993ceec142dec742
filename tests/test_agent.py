import dataclasses

import numpy as np
import torch

from planet.agent import Agent, collect_seed_episodes, run_episodes
from planet.config import Config, DataConfig, EnvConfig, PlannerConfig
from planet.envs import PixelEnv, episode_seed
from planet.model import WorldModel
from planet.planner import Planner
from planet.replay import episode_paths, load_episode


def test_planning_agent_runs_envs_side_by_side(tiny_model_cfg, device):
    envs = [PixelEnv(EnvConfig(id="PlanetCounter-v0", image_size=16, action_repeat=2)) for _ in range(3)]
    model = WorldModel(tiny_model_cfg, 1, 16).to(device)
    planner = Planner(model, PlannerConfig(candidates=16, top_k=4, horizon=3, iterations=2))
    agent = Agent(model, planner, torch.Generator(device).manual_seed(0))
    episodes = run_episodes(envs, [1, 2, 3], agent, exploration_noise=0.3)
    assert [len(e) for e in episodes] == [6, 6, 6]
    assert all(e.obs.shape == (7, 16, 16, 3) and np.abs(e.action).max() <= 1 for e in episodes)
    again = run_episodes(envs, [1, 2, 3], Agent(model, planner, torch.Generator(device).manual_seed(0)), 0.3)
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


def test_acting_filters_frames_exactly_as_training_observes_them(tiny_model_cfg):
    """At act time the agent filters o_t with the action a_{t-1} that led to it (zero before o_0);
    `rssm.observe` over the same frames and previous actions, as training lays out the replay
    (frame t+1 with action t), must give the same beliefs and states: the seed had an off-by-one here."""
    model = WorldModel(tiny_model_cfg, 1, 16)
    planner = Planner(model, PlannerConfig(candidates=16, top_k=4, horizon=3, iterations=2))
    calls = []
    step = model.rssm.posterior_step

    def recording_step(latent, action, embed, noise):
        result = step(latent, action, embed, noise)
        calls.append((action.clone(), noise.clone(), result[0]))
        return result

    model.rssm.posterior_step = recording_step
    env = PixelEnv(EnvConfig(id="PlanetCounter-v0", image_size=16, action_repeat=2))
    (episode,) = run_episodes([env], [5], Agent(model, planner, torch.Generator().manual_seed(0)), 0.3)
    model.rssm.posterior_step = step
    steps = len(episode)
    assert len(calls) == steps  # o_0 .. o_{T-1}, each filtered once before acting
    previous = np.concatenate([np.zeros((1, 1), np.float32), episode.action[:-1]])  # a_{-1} = 0, a_0 .. a_{T-2}
    assert np.array_equal(torch.stack([c[0] for c in calls])[:, 0].numpy(), previous)
    with torch.no_grad():
        frames = torch.as_tensor(episode.obs[:steps])[:, None].float() / 255  # (T, 1, S, S, 3)
        observed = model.rssm.observe(model.encode(frames), torch.as_tensor(previous)[:, None],
                                      model.rssm.initial(1, torch.device("cpu")), torch.stack([c[1] for c in calls]))
    assert torch.allclose(observed.beliefs[:, 0], torch.stack([c[2].belief[0] for c in calls]), atol=1e-5)
    assert torch.allclose(observed.states[:, 0], torch.stack([c[2].state[0] for c in calls]), atol=1e-5)


def test_collection_noise_is_scaled_gaussian_from_the_agents_generator_then_clamped(tiny_model_cfg):
    """act(noise) = clamp(plan[0] + noise * N(0, 1), -1, 1), the draw taken from the agent's generator
    right after planning: replayed here from a copy of the generator."""
    model = WorldModel(tiny_model_cfg, 1, 16)
    planner = Planner(model, PlannerConfig(candidates=16, top_k=4, horizon=3, iterations=2))
    agent = Agent(model, planner, torch.Generator().manual_seed(0))
    agent.reset(16)
    agent.observe(np.zeros((16, 16, 16, 3), np.uint8))
    replay = torch.Generator().manual_seed(1)
    replay.set_state(agent.generator.get_state())
    latent = agent.latent
    action = agent.act(2.0)
    plan = planner.plan_sequence(latent, replay)
    expected = (plan[0] + 2.0 * torch.randn((16, 1), generator=replay)).clamp(-1.0, 1.0)
    assert np.array_equal(action, expected.numpy())
    assert action.max() == 1.0 and action.min() == -1.0 and (np.abs(action) < 1).any()  # both bounds reached


def test_act_time_dequantisation_draws_from_the_agents_generator(tiny_model_cfg):
    """Below 8 bits, frames get dequantisation noise at act time as in training; it must come from the
    agent's generator, so acting is reproducible whatever else used torch's global RNG."""
    model = WorldModel(tiny_model_cfg, 1, 16)
    planner = Planner(model, PlannerConfig(candidates=16, top_k=4, horizon=3, iterations=2))
    frame = np.full((1, 16, 16, 3), 77, np.uint8)

    def state_after_one_frame(global_seed: int) -> torch.Tensor:
        torch.manual_seed(global_seed)
        agent = Agent(model, planner, torch.Generator().manual_seed(0), bit_depth=5)
        agent.reset(1)
        agent.observe(frame)
        return agent.latent.state

    assert torch.equal(state_after_one_frame(1), state_after_one_frame(2))


def test_episodes_act_on_the_plan_without_noise_and_off_it_with_noise(tiny_model_cfg):
    model = WorldModel(tiny_model_cfg, 1, 16)
    env = PixelEnv(EnvConfig(id="PlanetCounter-v0", image_size=16, action_repeat=2))
    for noise in (None, 0.3):
        planner = RecordingPlanner(model, PlannerConfig(candidates=16, top_k=4, horizon=3, iterations=2))
        planner.starts, planner.plans = [], []
        agent = Agent(model, planner, torch.Generator().manual_seed(0))
        (episode,) = run_episodes([env], [3], agent) if noise is None else run_episodes([env], [3], agent, noise)
        planned = torch.stack([p[0, 0] for p in planner.plans]).clamp(-1, 1).numpy()  # (T, A)
        if noise is None:  # the default: no exploration noise
            assert np.array_equal(episode.action, planned)
        else:
            assert not np.isclose(episode.action, planned).any()


def test_random_episodes_are_fixed_by_their_seeds_span_the_action_range_and_end_truncated():
    cfg = EnvConfig(id="PlanetCounter-v0", image_size=16, action_repeat=1)

    def episodes(seeds: list[int]) -> list:
        return run_episodes([PixelEnv(cfg) for _ in seeds], seeds, rng=np.random.default_rng(7))

    first, again = episodes([0, 1, 2, 3, 4, 5]), episodes([0, 1, 2, 3, 4, 5])
    assert all(np.array_equal(a.obs, b.obs) and np.array_equal(a.action, b.action) for a, b in zip(first, again))
    assert len({int(e.obs[0].max()) for e in first}) > 1  # the env seeds reach the envs: different starts
    actions = np.concatenate([e.action for e in first])  # (6 * 12, 1)
    assert actions.dtype == np.float32 and -1.0 <= actions.min() < -0.8 and 0.8 < actions.max() <= 1.0
    for e in first:  # a time limit truncates: the last step only, and nothing terminal
        assert e.truncated[-1] and not e.truncated[:-1].any() and not e.terminal.any()


def test_seed_episodes_are_random_actions_on_their_own_env_seeds_replacing_what_the_folder_held(tmp_path):
    cfg = Config(seed=0, env=EnvConfig(id="PlanetCounter-v0", image_size=16, action_repeat=2),
                 data=DataConfig(seed_episodes=3))
    folder = tmp_path / "seed"
    folder.mkdir()
    (folder / "stale.npz").write_bytes(b"from another run")
    collected = []
    assert collect_seed_episodes(cfg, folder, on_episode=lambda: collected.append(1)) == 3
    assert collected == [1, 1, 1]
    assert sorted(p.name for p in folder.iterdir()) == [p.name for p in episode_paths(folder)]  # stale.npz gone
    episodes = [load_episode(path) for path in episode_paths(folder)]
    assert [len(e) for e in episodes] == [6, 6, 6]  # 12 env steps at action repeat 2
    env = PixelEnv(cfg.env)
    for index, episode in enumerate(episodes):
        first = env.reset(seed=episode_seed(cfg.seed, index))  # seed 0 starts its three at 20, 10, 0
        assert np.array_equal(episode.obs[0], first)
    env.close()
    actions = np.concatenate([e.action for e in episodes])
    assert np.abs(actions).max() <= 1 and actions.std() > 0.3  # uniform on [-1, 1]
    again = tmp_path / "again"
    collect_seed_episodes(cfg, again)
    assert all(np.array_equal(load_episode(a).action, load_episode(b).action)
               for a, b in zip(episode_paths(folder), episode_paths(again)))
    other = tmp_path / "other"
    collect_seed_episodes(dataclasses.replace(cfg, seed=1), other)
    assert not np.array_equal(load_episode(episode_paths(other)[0]).action, episodes[0].action)
