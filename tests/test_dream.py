import numpy as np
import torch
from test_replay import make_episode

from planet.dream import Dream, dream, return_error
from planet.model import WorldModel


def test_dream_shapes_and_clipping(tiny_model_cfg, device):
    model = WorldModel(tiny_model_cfg, 1, 16).eval().to(device)
    episode = make_episode(12, size=16)
    result = dream(model, episode, context=3, steps=5, generator=torch.Generator(device).manual_seed(0))
    assert result.real.shape == result.imagined.shape == (8, 16, 16, 3)
    assert result.imagined.dtype == result.real.dtype
    assert result.mse.shape == result.reward_true.shape == result.reward_pred.shape == (8,)
    assert (result.real == episode.obs[1:9]).all() and (result.reward_true == episode.reward[:8]).all()
    longer = dream(model, episode, context=3, steps=50, generator=torch.Generator(device).manual_seed(0))
    assert len(longer.mse) == 12  # clipped to the episode


def test_return_error_sums_only_the_open_loop_window():
    n = 10
    true = np.arange(n, dtype=np.float32)
    pred = true.copy()
    pred[:3] += 100.0  # context steps (filtered, not dreamed) must not count
    pred[3:5] += [2.0, 0.5]  # the first two dream steps: +2.5 in total
    frames = np.zeros((n, 4, 4, 3), np.uint8)
    result = Dream(frames, frames, np.zeros(n), true, pred)
    assert return_error(result, context=3, horizon=2) == 2.5
    assert return_error(result, context=3, horizon=7) == 2.5
    assert return_error(result, context=3, horizon=8) is None  # past the end of the dream
    pessimistic = Dream(frames, frames, np.zeros(n), true, true - 1.0)
    assert return_error(pessimistic, context=0, horizon=4) == -4.0


def test_a_dream_sees_only_its_context_frames(tiny_model_cfg):
    """The posterior filters the first `context` frames; after them only the prior and the recorded
    actions drive the dream, so frames after the context cannot change it, and a context frame can."""
    import dataclasses

    torch.manual_seed(0)
    model = WorldModel(tiny_model_cfg, 1, 16).eval()
    episode = make_episode(12, size=16)
    rng = np.random.default_rng(1)
    later = episode.obs.copy()
    later[4:] = rng.integers(0, 256, later[4:].shape, dtype=np.uint8)  # frames o_4.. = after a context of 3
    earlier = episode.obs.copy()
    earlier[2] = 255 - earlier[2]  # o_2, a context frame

    def dreamed(obs):
        changed = dataclasses.replace(episode, obs=obs)
        return dream(model, changed, context=3, steps=6, generator=torch.Generator().manual_seed(0))

    base, after, before = dreamed(episode.obs), dreamed(later), dreamed(earlier)
    assert np.array_equal(after.imagined, base.imagined) and np.array_equal(after.reward_pred, base.reward_pred)
    # the dream starts from the context: any change to a context frame reaches the dream (exactly
    # reproducible otherwise, so no tolerance is needed; an untrained model's change is small)
    assert not np.array_equal(before.reward_pred[3:], base.reward_pred[3:])


def test_write_dreams_writes_each_dream_and_reports_its_errors(tiny_model_cfg, tmp_path):
    """Videos and gifs per episode, the error plot, a row per frame (horizon <= 0: context), and
    metrics that are the dreams' own errors averaged over episodes; what `out` held is replaced."""
    from planet.dream import write_dreams

    torch.manual_seed(0)
    model = WorldModel(tiny_model_cfg, 1, 16).eval()
    episodes = [make_episode(12, size=16, start=s) for s in (0, 40)]
    out = tmp_path / "dream"
    (out / "gifs").mkdir(parents=True)
    (out / "gifs" / "dream_7.gif").write_bytes(b"stale")
    report = write_dreams(model, episodes, 3, 6, torch.Generator().manual_seed(0), out, bit_depth=5)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "error.png", "gifs/dream_0.gif", "gifs/dream_1.gif", "videos/dream_0.mp4", "videos/dream_1.mp4"]
    generator = torch.Generator().manual_seed(0)
    dreams = [dream(model, ep, 3, 6, generator, 5) for ep in episodes]  # the same draws, in the same order
    assert [(r["episode"], r["step"], r["horizon"]) for r in report.errors] == [
        (i, t, t - 3) for i in (0, 1) for t in range(1, 10)]
    assert [r["mse"] for r in report.errors] == [float(m) for d in dreams for m in d.mse]
    assert [(r["episode"], r["step"], r["reward_true"], r["reward_predicted"]) for r in report.rewards] == [
        (i, t + 1, float(a), float(b)) for i, d in enumerate(dreams) for t, (a, b) in
        enumerate(zip(d.reward_true, d.reward_pred))]
    assert set(report.metrics) == {"mse_h1", "mse_h5", "return_error_h1", "return_error_h5"}
    for h in (1, 5):
        assert report.metrics[f"mse_h{h}"] == round(float(np.mean([d.mse[2 + h] for d in dreams])), 6)
        assert report.metrics[f"return_error_h{h}"] == round(float(np.mean([return_error(d, 3, h) for d in dreams])), 3)


def test_a_dreams_frames_and_errors_are_what_it_imagined(tiny_model_cfg):
    """The imagined frames are the decoder's pixels as uint8, and mse compares them with the real
    frames (8 bits: no dequantisation noise; a sigmoid decoder: nothing clipped), up to uint8 rounding."""
    import dataclasses

    torch.manual_seed(0)
    model = WorldModel(dataclasses.replace(tiny_model_cfg, decoder_output="sigmoid"), 1, 16).eval()
    result = dream(model, make_episode(12, size=16), 3, 6, torch.Generator().manual_seed(0), bit_depth=8)
    imagined, real = result.imagined / 255.0, result.real / 255.0
    assert result.imagined.dtype == np.uint8 and 0 < result.imagined.mean() < 255
    assert np.allclose(result.mse, ((imagined - real) ** 2).mean(axis=(1, 2, 3)), rtol=0.01, atol=1e-5)
