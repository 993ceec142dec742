"""The planner's rollout step on a CPU in bf16, with each weight packed for oneDNN once per plan.

A plan runs the same eight matmuls 120 times (horizon 12 x 10 iterations) over 1000 candidates.
Under autocast every call casts its fp32 weight to bf16 again, `addmm` first copies the bias into
its output, and each ReLU is one more pass over memory. Here each layer's weight is cast to bf16 and
reordered into oneDNN's blocked layout once per plan (`torch.ops.mkldnn._reorder_linear_weight`, what
torch.compile's freezing pass does to frozen weights), and each call adds its bias and applies its
ReLU inside the matmul (`torch.ops.mkldnn._linear_pointwise`). On the 2-core AMD EPYC this plans
faster than the compiled autocast step (docs/performance.md has the figures).

The maths is the model's own (`gru_gates`, `positive_std`, the reward MLP's layers), so a step
matches `planner.imagine_reward` under bf16 autocast to bf16 rounding (tests/test_packed.py). Packed
weights are a snapshot: pack again after the weights change (the planner packs at every plan).
torch.compile cannot trace a packed weight that is not a frozen constant, so this step runs eagerly.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from planet.model import Gaussian, LatentState, WorldModel, gru_gates, positive_std


def packed_rollout_available() -> bool:
    """oneDNN is built in and this CPU has a bf16 path for it."""
    try:
        return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without these ops
        return False


class PackedLinear(NamedTuple):
    weight: Tensor  # (out, in) bf16, in oneDNN's blocked layout
    bias: Tensor  # (out,) bf16

    def __call__(self, inputs: Tensor, activation: str = "none") -> Tensor:
        """(M, in) bf16 -> activation(inputs @ weight.T + bias) (M, out); activation "none" or "relu"."""
        return torch.ops.mkldnn._linear_pointwise(inputs, self.weight, self.bias, activation, [], "")


def pack_linear(weight: Tensor, bias: Tensor, rows: int) -> PackedLinear:
    """A layer's fp32 weight (out, in) and bias, laid out for matmuls of `rows` rows."""
    packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().bfloat16(), rows)
    return PackedLinear(packed, bias.detach().bfloat16())


class PackedRollout(NamedTuple):
    input_embed: PackedLinear | None  # the paper network's [s, a] embedding, ReLU after it
    gate_in: PackedLinear  # the GRU's W_ih, b_ih
    gate_h: PackedLinear  # the GRU's W_hh, b_hh
    prior_hidden: PackedLinear
    prior_mean: PackedLinear
    prior_std: PackedLinear
    reward: tuple[PackedLinear, ...]  # the reward MLP's three layers, ReLU between them
    min_std: float


def pack_rollout(model: WorldModel, rows: int) -> PackedRollout:
    """Snapshot the layers one rollout step uses, for steps over `rows` candidates at once."""
    rssm = model.rssm
    linears = [layer for layer in model.reward.net if isinstance(layer, nn.Linear)]
    return PackedRollout(
        input_embed=(None if rssm.input_embed is None
                     else pack_linear(rssm.input_embed.weight, rssm.input_embed.bias, rows)),
        gate_in=pack_linear(rssm.gru.weight_ih, rssm.gru.bias_ih, rows),
        gate_h=pack_linear(rssm.gru.weight_hh, rssm.gru.bias_hh, rows),
        prior_hidden=pack_linear(rssm.prior_hidden.weight, rssm.prior_hidden.bias, rows),
        prior_mean=pack_linear(rssm.prior_mean.weight, rssm.prior_mean.bias, rows),
        prior_std=pack_linear(rssm.prior_std.weight, rssm.prior_std.bias, rows),
        reward=tuple(pack_linear(layer.weight, layer.bias, rows) for layer in linears),
        min_std=rssm.cfg.min_std,
    )


def packed_imagine_reward(rollout: PackedRollout, latent: LatentState, action: Tensor,
                          noise: Tensor) -> tuple[LatentState, Tensor]:
    """`planner.imagine_reward` on packed weights: latent (M, .) bf16, action (M, A), noise (M, Z)
    -> latent' (M, .) bf16 and the reward predicted there (M,) fp32."""
    inputs = torch.cat([latent.state, action.to(latent.state.dtype)], dim=-1)  # (M, Z+A)
    if rollout.input_embed is not None:
        inputs = rollout.input_embed(inputs, "relu")  # (M, hidden)
    belief = gru_gates(rollout.gate_in(inputs), rollout.gate_h(latent.belief), latent.belief)  # (M, H)
    hidden = rollout.prior_hidden(belief, "relu")
    prior = Gaussian(rollout.prior_mean(hidden), positive_std(rollout.prior_std(hidden), rollout.min_std))
    latent = LatentState(belief, prior.sample(noise))
    first, middle, last = rollout.reward
    hidden = middle(first(WorldModel.features(latent), "relu"), "relu")  # (M, reward width)
    return latent, last(hidden).squeeze(-1).float()
