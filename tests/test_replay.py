import numpy as np
import pytest

from planet.agent import run_episodes
from planet.config import EnvConfig
from planet.envs import PixelEnv
from planet.replay import Episode, EpisodeError, SequenceSampler, episode_path, load_episode, save_episode


def make_episode(steps: int, size: int = 8, start: int = 0) -> Episode:
    obs = np.stack([np.full((size, size, 3), start + t, np.uint8) for t in range(steps + 1)])
    return Episode(obs=obs, action=np.full((steps, 1), start, np.float32),
                   reward=np.arange(start, start + steps, dtype=np.float32),
                   terminal=np.zeros(steps, bool), truncated=np.eye(1, steps, steps - 1, dtype=bool)[0])


def test_round_trip(tmp_path):
    ep = make_episode(10)
    path = episode_path(tmp_path, 3)
    save_episode(path, ep)
    back = load_episode(path)
    for name in ("obs", "action", "reward", "terminal", "truncated"):
        assert np.array_equal(getattr(back, name), getattr(ep, name))
        assert getattr(back, name).dtype == getattr(ep, name).dtype
    assert [p.name for p in tmp_path.iterdir()] == ["episode_000003.npz"]  # no temp file left


def test_truncated_file_names_the_file(tmp_path):
    path = episode_path(tmp_path, 0)
    save_episode(path, make_episode(10))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(EpisodeError, match="episode_000000.npz: corrupt or truncated"):
        load_episode(path)


def test_wrong_shape_names_the_file(tmp_path):
    path = tmp_path / "episode_000001.npz"
    ep = make_episode(5)
    np.savez(path, obs=ep.obs[:3], action=ep.action, reward=ep.reward, terminal=ep.terminal, truncated=ep.truncated)
    with pytest.raises(EpisodeError, match="episode_000001.npz: obs has 3 frames for 5 actions"):
        load_episode(path)
    np.savez(path, obs=ep.obs.astype(np.float32), action=ep.action, reward=ep.reward, terminal=ep.terminal,
             truncated=ep.truncated)
    with pytest.raises(EpisodeError, match="episode_000001.npz: obs has dtype float32"):
        load_episode(path)


def test_pickled_object_arrays_are_refused(tmp_path):
    path = tmp_path / "episode_000002.npz"
    ep = make_episode(4)
    np.savez(path, obs=np.array([object()], dtype=object), action=ep.action, reward=ep.reward,
             terminal=ep.terminal, truncated=ep.truncated)
    with pytest.raises(EpisodeError, match="episode_000002.npz"):
        load_episode(path)


def test_sampler_never_crosses_episodes():
    # Each episode's frames carry its own base value (0, 100, 200), so a crossing would mix them.
    episodes = [make_episode(12, start=0), make_episode(30, start=100), make_episode(5, start=200)]
    sampler = SequenceSampler(episodes, seq_len=6, rng=np.random.default_rng(0))
    assert len(sampler.episodes) == 2  # the 5-step one is too short
    for _ in range(50):
        batch = sampler.sample(8)
        assert batch.obs.shape == (6, 8, 8, 8, 3) and batch.action.shape == (6, 8, 1) and batch.reward.shape == (6, 8)
        base = batch.action[0, :, 0]  # constant within an episode
        assert np.all(batch.action[..., 0] == base)
        assert np.all(np.diff(batch.obs[:, :, 0, 0, 0].astype(int), axis=0) == 1)  # consecutive frames
        assert np.all(batch.obs[:, :, 0, 0, 0] - batch.reward == 1)  # obs[t] = o_{i+1+t}, reward[t] = r_{i+t}


def test_sampler_is_seeded_and_fails_clearly():
    episodes = [make_episode(20)]
    a = SequenceSampler(episodes, 5, np.random.default_rng(1)).sample(4)
    b = SequenceSampler(episodes, 5, np.random.default_rng(1)).sample(4)
    assert np.array_equal(a.obs, b.obs)
    with pytest.raises(EpisodeError, match="no episode has train.seq_len=50 steps"):
        SequenceSampler(episodes, 50, np.random.default_rng(0))


def test_time_alignment_with_a_real_env():
    """CounterEnv: frame k shows 10k, reward for env action u at count k is 10u + k, u = 2a."""
    env = PixelEnv(EnvConfig(id="PlanetCounter-v0", image_size=16, action_repeat=1))
    (episode,) = run_episodes([env], [5], rng=np.random.default_rng(0))
    assert len(episode) == 12 and episode.truncated[-1] and not episode.truncated[:-1].any()
    sampler = SequenceSampler([episode], seq_len=4, rng=np.random.default_rng(0))
    batch = sampler.sample(16)
    count_seen = batch.obs[:, :, 0, 0, 0].astype(np.float64) / 10  # count after the step
    # reward[t] was paid for action[t], the action that led to obs[t]:
    assert np.allclose(batch.reward, 20.0 * batch.action[..., 0] + count_seen - 1, atol=1e-4)
