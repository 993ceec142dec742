import numpy as np
import pytest

from planet.agent import run_episodes
from planet.config import EnvConfig
from planet.envs import PixelEnv
from planet.replay import (
    Episode,
    EpisodeError,
    SequenceSampler,
    episode_path,
    episode_paths,
    load_episode,
    load_episodes,
    save_episode,
)


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


def with_field(episode: Episode, **arrays) -> dict:
    return {**{name: getattr(episode, name) for name in ("obs", "action", "reward", "terminal", "truncated")},
            **arrays}


@pytest.mark.parametrize("change, message", [
    (lambda ep: {"action": ep.action.astype(np.float64)}, "action has dtype float64, expected float32"),
    (lambda ep: {"terminal": ep.terminal.astype(np.uint8)}, "terminal has dtype uint8, expected bool"),
    (lambda ep: {"obs": ep.obs[..., :2]}, "obs has shape (6, 8, 8, 2), expected (T+1, S, S, 3)"),
    (lambda ep: {"obs": ep.obs[:, :, :4]}, "obs has shape (6, 8, 4, 3), expected (T+1, S, S, 3)"),
    (lambda ep: {"obs": ep.obs[:, :4]}, "obs has shape (6, 4, 8, 3), expected (T+1, S, S, 3)"),
    (lambda ep: {"obs": ep.obs[0]}, "obs has shape (8, 8, 3), expected (T+1, S, S, 3)"),
    (lambda ep: {"action": ep.action[:, 0]}, "action has shape (5,), expected (T, A) with T >= 1"),
    (lambda ep: {"obs": ep.obs[:1], "action": ep.action[:0], "reward": ep.reward[:0], "terminal": ep.terminal[:0],
                 "truncated": ep.truncated[:0]}, "action has shape (0, 1), expected (T, A) with T >= 1"),
    (lambda ep: {"obs": ep.obs[:5]}, "obs has 5 frames for 5 actions, expected 6"),
    (lambda ep: {"reward": ep.reward[:4]}, "reward has shape (4,), expected (5,)"),
    (lambda ep: {"truncated": ep.truncated[:, None]}, "truncated has shape (5, 1), expected (5,)"),
])
def test_every_malformed_episode_is_refused_with_what_is_wrong(change, message):
    ep = make_episode(5)
    with pytest.raises(EpisodeError) as err:
        Episode(**with_field(ep, **change(ep)))
    assert str(err.value) == message


def test_a_one_step_episode_is_an_episode():
    ep = make_episode(1)
    assert len(ep) == 1 and ep.total_reward == 0.0 and make_episode(4, start=1).total_reward == 10.0


def test_files_that_are_not_episodes_say_what_is_missing(tmp_path):
    path = tmp_path / "episode_000004.npz"
    ep = make_episode(4)
    np.savez(path, obs=ep.obs, action=ep.action)
    with pytest.raises(EpisodeError) as err:
        load_episode(path)
    assert str(err.value) == f"{path}: not an episode file (missing reward, terminal, truncated)"
    np.savez(path, **with_field(ep, obs=ep.obs[:3]))
    with pytest.raises(EpisodeError) as err:
        load_episode(path)
    assert str(err.value) == f"{path}: obs has 3 frames for 4 actions, expected 5"  # the path named once


def test_a_pickled_episode_is_never_unpickled(tmp_path):
    path = tmp_path / "episode_000005.npz"
    ep = make_episode(4)
    np.savez(path, **with_field(ep, reward=np.array([1.0, 2.0, 3.0, 4.0], dtype=object)))
    with pytest.raises(EpisodeError) as err:
        load_episode(path)
    assert str(err.value).startswith(f"{path}: corrupt or truncated episode file (")
    assert "allow_pickle=False" in str(err.value)


def test_a_folder_lists_and_loads_its_episodes_in_order(tmp_path):
    for index in (10, 2, 7):
        save_episode(episode_path(tmp_path, index), make_episode(3, start=index))
    (tmp_path / "notes.txt").write_text("not an episode")
    assert [p.name for p in episode_paths(tmp_path)] == ["episode_000002.npz", "episode_000007.npz",
                                                         "episode_000010.npz"]
    assert [ep.reward[0] for ep in load_episodes(tmp_path)] == [2.0, 7.0, 10.0]
    assert episode_paths(tmp_path / "none") == []


def test_the_sampler_draws_every_window_uniformly_including_whole_episodes():
    """Lengths 6 and 12 at seq_len 6: 1 + 7 windows, each drawn about 1/8 of the time, the first and
    the last included; episodes added later join the draw, too-short ones never do."""
    sampler = SequenceSampler([make_episode(6, start=0), make_episode(12, start=100)], 6, np.random.default_rng(0))
    sampler.add(make_episode(5, start=200))
    assert len(sampler.episodes) == 2
    sampler.add(make_episode(6, start=50))
    batch = sampler.sample(9000)
    first_frames = batch.obs[0, :, 0, 0, 0].astype(int)  # o_{start+1}: identifies the window
    windows, counts = np.unique(first_frames, return_counts=True)
    assert windows.tolist() == [1, 51, 101, 102, 103, 104, 105, 106, 107]
    assert np.all(np.abs(counts / 9000 - 1 / 9) < 0.015), counts
    with pytest.raises(EpisodeError, match=r"^no episode has train.seq_len=7 steps \(longest: 6\)$"):
        SequenceSampler([make_episode(6), make_episode(3)], 7, np.random.default_rng(0))
    with pytest.raises(EpisodeError, match=r"^no episode has train.seq_len=7 steps \(longest: 0\)$"):
        SequenceSampler([], 7, np.random.default_rng(0))
