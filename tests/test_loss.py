import numpy as np
import pytest
import torch

from planet.config import TrainConfig
from planet.loss import (
    TensorBatch,
    kl_divergence,
    make_optimizer,
    overshooting,
    preprocess_obs,
    train_step,
    world_model_loss,
)
from planet.model import Gaussian, LatentState, WorldModel
from planet.runtime import PLAIN, Runtime


def random_batch(steps=6, batch=3, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorBatch(torch.randint(0, 256, (steps, batch, size, size, 3), dtype=torch.uint8, generator=g),
                       torch.rand(steps, batch, 1, generator=g) * 2 - 1, torch.randn(steps, batch, generator=g))


def test_kl_matches_the_closed_form():
    g = torch.Generator().manual_seed(0)
    q = Gaussian(torch.randn(4, 5, generator=g), torch.rand(4, 5, generator=g) + 0.1)
    p = Gaussian(torch.randn(4, 5, generator=g), torch.rand(4, 5, generator=g) + 0.1)
    closed = (torch.log(p.std / q.std) + (q.std**2 + (q.mean - p.mean) ** 2) / (2 * p.std**2) - 0.5).sum(-1)
    assert torch.allclose(kl_divergence(q, p), closed, atol=1e-5)


def overshooting_loop(model, observed, action, depth, noise):
    """The seed's straightforward T x D loop (with the action alignment fixed), as the reference."""
    steps = observed.beliefs.shape[0]
    kls = []
    for t in range(steps - 1):
        latent = LatentState(observed.beliefs[t].detach(), observed.states[t].detach())
        for d in range(1, min(depth, steps - 1 - t) + 1):
            latent, prior = model.rssm.imagine_step(latent, action[t + d], noise[d - 1, t])
            target = Gaussian(observed.posterior.mean[t + d].detach(), observed.posterior.std[t + d].detach())
            kls.append(kl_divergence(target, prior).mean())
    return torch.stack(kls).mean()


def test_vectorised_overshooting_equals_the_loop(tiny_model_cfg):
    torch.manual_seed(0)
    model = WorldModel(tiny_model_cfg, 1, 16)
    batch = random_batch(steps=7)
    observed = model.rssm.observe(model.encode(batch.obs.float() / 255), batch.action,
                                  model.rssm.initial(3, torch.device("cpu")), torch.randn(7, 3, 4))
    for depth in (1, 3, 6, 9):
        noise = torch.randn(depth, 6, 3, 4)
        fast = overshooting(model, observed, batch.action, depth, noise)
        slow = overshooting_loop(model, observed, batch.action, depth, noise)
        assert torch.allclose(fast, slow, rtol=1e-5), (depth, fast, slow)
    # Gradients agree too; they reach the prior path, not the reward head or the (detached) posterior.
    grads = []
    for fn in (overshooting, overshooting_loop):
        model.zero_grad()
        fn(model, observed, batch.action, 3, torch.ones(3, 6, 3, 4)).backward(retain_graph=True)
        grads.append(model.rssm.gru.weight_hh.grad.clone())
    assert torch.allclose(*grads, atol=1e-6) and grads[0].abs().sum() > 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.reward.parameters())
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.rssm.posterior_hidden.parameters())


def test_terms_and_free_nats(tiny_model_cfg):
    torch.manual_seed(0)
    model = WorldModel(tiny_model_cfg, 1, 16)
    cfg = TrainConfig(reward_scale=10.0, kl_beta=0.5, overshoot_beta=0.25)  # no weight of 1 hides a missing one
    terms = world_model_loss(model, random_batch(), cfg, torch.Generator().manual_seed(0))
    expected = (terms.recon + cfg.reward_scale * terms.reward + cfg.kl_beta * terms.kl
                + cfg.overshoot_beta * terms.overshoot)
    assert torch.allclose(terms.total, expected) and terms.overshoot > 0
    assert all(t.ndim == 0 and torch.isfinite(t) for t in terms)



def test_free_nats_clamp_each_step_not_the_mean(tiny_model_cfg, monkeypatch):
    """The official code clamps the KL of every (t, b) at `free_nats`, then averages; clamping the
    mean instead gives another loss (and gradient) whenever some steps are above and some below."""
    import planet.loss

    torch.manual_seed(0)
    model = WorldModel(tiny_model_cfg, 1, 16)
    seen = []
    monkeypatch.setattr(planet.loss, "kl_divergence", lambda q, p: seen.append(kl_divergence(q, p)) or seen[-1])
    world_model_loss(model, random_batch(), TrainConfig(), torch.Generator().manual_seed(0))
    per_step = seen[-1].detach()  # (T, B)
    free_nats = per_step.median().item()
    terms = world_model_loss(model, random_batch(), TrainConfig(free_nats=free_nats), torch.Generator().manual_seed(0))
    expected = per_step.clamp(min=free_nats).mean()
    assert torch.allclose(terms.kl, expected)
    assert not torch.allclose(expected, per_step.mean().clamp(min=free_nats))  # the two rules differ here


def test_bit_depth_quantises_and_dequantises():
    obs = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(preprocess_obs(obs, 8), obs.float() / 255)
    five = preprocess_obs(obs, 5, torch.Generator().manual_seed(0))
    bins = torch.div(obs, 8, rounding_mode="floor").float() / 32
    assert ((five - bins) >= 0).all() and ((five - bins) < 1 / 32).all()


def run_steps(model_cfg, steps, seed=0):
    torch.manual_seed(seed)
    model = WorldModel(model_cfg, 1, 16)
    cfg = TrainConfig(lr=1e-3)
    optimizer = make_optimizer(model, cfg)
    generator = torch.Generator().manual_seed(seed)
    batch = random_batch()
    return [train_step(model, optimizer, batch, cfg, generator).loss.total.item() for _ in range(steps)]


def test_same_seed_same_losses(tiny_model_cfg):
    assert run_steps(tiny_model_cfg, 3) == run_steps(tiny_model_cfg, 3)
    assert run_steps(tiny_model_cfg, 3) != run_steps(tiny_model_cfg, 3, seed=1)


def test_bf16_loss_stays_within_two_percent_of_fp32(tiny_model_cfg, ):
    torch.manual_seed(0)
    model = WorldModel(tiny_model_cfg, 1, 16)
    batch = random_batch()
    losses = {}
    for bf16 in (False, True):
        with Runtime(bf16=bf16).autocast():
            losses[bf16] = world_model_loss(model, batch, TrainConfig(), torch.Generator().manual_seed(0)).total
    assert abs(losses[True].item() - losses[False].item()) <= 0.02 * abs(losses[False].item())


def moving_square_batch(rng, steps=10, batch=8, size=16):
    """A square that moves by the action: learnable dynamics, reward = its x position."""
    obs = np.zeros((steps, batch, size, size, 3), np.uint8)
    action = rng.uniform(-1, 1, (steps, batch, 1)).astype(np.float32)
    x = rng.integers(2, size - 6, batch).astype(np.float32)
    reward = np.zeros((steps, batch), np.float32)
    for t in range(steps):
        x = np.clip(x + 2 * action[t, :, 0], 0, size - 4)
        for b in range(batch):
            obs[t, b, 4:8, int(x[b]):int(x[b]) + 4] = 255
        reward[t] = x / size
    return TensorBatch(torch.from_numpy(obs), torch.from_numpy(action), torch.from_numpy(reward))


def test_a_few_hundred_steps_drive_the_loss_down(tiny_model_cfg):
    torch.manual_seed(0)
    model = WorldModel(tiny_model_cfg, 1, 16)
    cfg = TrainConfig(lr=3e-3, overshoot_depth=3)
    optimizer = make_optimizer(model, cfg)
    generator, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
    totals = [train_step(model, optimizer, moving_square_batch(rng), cfg, generator).loss for _ in range(300)]
    first = torch.stack([t.total for t in totals[:20]]).mean()
    last = torch.stack([t.total for t in totals[-20:]]).mean()
    recon_first = torch.stack([t.recon for t in totals[:20]]).mean()
    recon_last = torch.stack([t.recon for t in totals[-20:]]).mean()
    assert last < 0.3 * first and recon_last < 0.3 * recon_first, (first, last)


def test_each_term_is_the_papers_by_an_independent_computation(tiny_model_cfg):
    """Recon: squared error summed over each frame's pixels, mean over (T, B); reward: mean squared
    error; KL: summed over state dims, mean over (T, B); computed here with torch's own functions."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = WorldModel(tiny_model_cfg, 1, 16)
    batch = random_batch(steps=5, batch=4)  # batch 4, not 3: a sum over the wrong axis must not match
    cfg = TrainConfig(bit_depth=8, free_nats=0.0, overshoot_beta=0.0)  # 8 bits: no dequantisation noise
    terms = world_model_loss(model, batch, cfg, torch.Generator().manual_seed(0))
    obs = batch.obs.float() / 255
    noise = torch.randn((5, 4, 4), generator=torch.Generator().manual_seed(0))  # the loss's first draw
    observed = model.rssm.observe(model.encode(obs), batch.action, model.rssm.initial(4, torch.device("cpu")), noise)
    features = torch.cat([observed.beliefs, observed.states], -1)
    prior = torch.distributions.Normal(observed.prior.mean, observed.prior.std)
    posterior = torch.distributions.Normal(observed.posterior.mean, observed.posterior.std)
    assert torch.allclose(terms.recon, F.mse_loss(model.decode(features), obs, reduction="sum") / 20, rtol=1e-5)
    assert torch.allclose(terms.reward, F.mse_loss(model.reward(features), batch.reward), rtol=1e-5)
    assert torch.allclose(terms.kl, torch.distributions.kl_divergence(posterior, prior).sum(-1).mean(), rtol=1e-5)
    assert terms.overshoot.item() == 0.0


def test_every_draw_comes_from_the_generator_handed_in(tiny_model_cfg):
    """Dequantisation, filtering and overshooting noise all come from `generator`: the same generator
    seed gives the same loss whatever the global RNG holds, another seed another loss."""
    torch.manual_seed(0)
    model = WorldModel(tiny_model_cfg, 1, 16)
    batch = random_batch()
    cfg = TrainConfig(bit_depth=5, overshoot_beta=0.5, overshoot_depth=2)

    def loss(seed, global_seed):
        torch.manual_seed(global_seed)
        return [t.item() for t in world_model_loss(model, batch, cfg, torch.Generator().manual_seed(seed))]

    assert loss(0, 1) == loss(0, 2) != loss(1, 1)
    from planet.loss import preprocess_obs

    frames = batch.obs[:2]
    torch.manual_seed(1)
    first = preprocess_obs(frames, 5, torch.Generator().manual_seed(0))
    torch.manual_seed(2)
    assert torch.equal(first, preprocess_obs(frames, 5, torch.Generator().manual_seed(0)))


def test_overshooting_of_depth_one_on_two_steps_is_the_one_prior_step_kl(tiny_model_cfg):
    """The smallest case: T=2, B=1, depth 1 has one (start, distance) pair: KL between the posterior at
    t=1 and the prior one step on from the posterior at t=0, with action[1] and the overshooting draw."""
    torch.manual_seed(0)
    model = WorldModel(tiny_model_cfg, 1, 16)
    batch = random_batch(steps=2, batch=1)
    cfg = TrainConfig(bit_depth=8, overshoot_beta=1.0, overshoot_depth=1)
    terms = world_model_loss(model, batch, cfg, torch.Generator().manual_seed(0))
    draws = torch.Generator().manual_seed(0)
    noise = torch.randn((2, 1, 4), generator=draws)  # the loss's draws, in its order
    overshoot_noise = torch.randn((1, 1, 1, 4), generator=draws)
    with torch.no_grad():
        observed = model.rssm.observe(model.encode(batch.obs.float() / 255), batch.action,
                                      model.rssm.initial(1, torch.device("cpu")), noise)
        start = LatentState(observed.beliefs[0], observed.states[0])
        _, prior = model.rssm.imagine_step(start, batch.action[1], overshoot_noise[0, 0])
        target = Gaussian(observed.posterior.mean[1], observed.posterior.std[1])
        expected = kl_divergence(target, prior).sum()
    assert expected > 0 and torch.allclose(terms.overshoot, expected, rtol=1e-5)


def test_train_step_runs_fp32_exactly_bf16_under_autocast_and_draws_from_its_generator(tiny_model_cfg):
    batch, cfg = random_batch(), TrainConfig(bit_depth=5, overshoot_beta=0.5, overshoot_depth=2)

    def first_loss(runtime: Runtime, global_seed: int = 0) -> float:
        torch.manual_seed(0)
        model = WorldModel(tiny_model_cfg, 1, 16)
        torch.manual_seed(global_seed)
        step = train_step(model, make_optimizer(model, cfg), batch, cfg, torch.Generator().manual_seed(3),
                          runtime.autocast())
        return step.loss.total.item()

    torch.manual_seed(0)
    model = WorldModel(tiny_model_cfg, 1, 16)
    plain = world_model_loss(model, batch, cfg, torch.Generator().manual_seed(3)).total.item()
    assert first_loss(PLAIN) == plain == first_loss(PLAIN, global_seed=5)  # no autocast; only its generator
    assert first_loss(Runtime(bf16=True)) != plain  # bf16 does run under autocast


@pytest.mark.parametrize("bf16", [False, True])
def test_a_train_step_on_a_device_updates_every_weight_there(tiny_model_cfg, device, bf16):
    batch = TensorBatch(*(t.to(device) for t in random_batch()))
    cfg = TrainConfig(bit_depth=5, overshoot_beta=0.5, overshoot_depth=2)
    model = WorldModel(tiny_model_cfg, 1, 16).to(device)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    step = train_step(model, make_optimizer(model, cfg), batch, cfg, torch.Generator(device).manual_seed(3),
                      Runtime(device, bf16=bf16).autocast())
    assert step.loss.total.device.type == device.type and torch.isfinite(step.loss.total)
    assert all(not torch.equal(before[k], v) and v.device.type == device.type for k, v in model.state_dict().items())


def test_the_optimizer_is_adamw_with_the_configured_lr_eps_and_weight_decay(tiny_model_cfg):
    cfg = TrainConfig(lr=3e-4, adam_eps=1e-6, weight_decay=0.05)
    optimizer = make_optimizer(WorldModel(tiny_model_cfg, 1, 16), cfg)
    (group,) = optimizer.param_groups
    assert isinstance(optimizer, torch.optim.AdamW)
    assert (group["lr"], group["eps"], group["weight_decay"]) == (3e-4, 1e-6, 0.05)
