"""The world model (paper Sec. 3): encoder, RSSM (GRU + Gaussian prior and posterior), decoder, reward.

Tensors are time-major, (T, B, ...). `belief` is the deterministic GRU state h_t, `state` the
stochastic latent s_t (Kaixhin/PlaNet's vocabulary):

    h_t = GRU([s_{t-1}, a_{t-1}], h_{t-1})      prior      p(s_t | h_t)
                                                 posterior  q(s_t | h_t, e_t),  e_t = enc(o_t)

Sizes follow the notebook's module table; with its config the model has exactly 7,310,436 parameters.
Two speed-ups keep that parameter layout: the encoder, decoder, prior and reward head run once over
all T*B frames, and the posterior's first layer is split so its embedding half is one big matmul
outside the scan; only h-dependent work stays inside the time loop.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from planet.config import ModelConfig


class LatentState(NamedTuple):
    belief: Tensor  # (..., H) deterministic
    state: Tensor  # (..., Z) stochastic


class Gaussian(NamedTuple):
    mean: Tensor  # (..., Z)
    std: Tensor  # (..., Z)

    def sample(self, noise: Tensor) -> Tensor:
        return torch.addcmul(self.mean, self.std, noise.to(self.std.dtype))  # reparameterised

    def distribution(self) -> torch.distributions.Independent:
        """fp32 diagonal Gaussian, so KLs stay accurate under bf16 autocast."""
        normal = torch.distributions.Normal(self.mean.float(), self.std.float(), validate_args=False)
        return torch.distributions.Independent(normal, 1)


class Observed(NamedTuple):
    beliefs: Tensor  # (T, B, H)
    states: Tensor  # (T, B, Z) posterior samples
    prior: Gaussian  # (T, B, Z)
    posterior: Gaussian  # (T, B, Z)


def conv_out_size(image_size: int) -> int:
    """Side of the encoder's last feature map for (padded) frames of side `image_size`."""
    return image_size // 16  # four stride-2 convs


class Encoder(nn.Module):
    """(N, S, S, 3) in [0, 1] -> (N, E). Four 4x4 stride-2 convs; the notebook's are padded and end in a
    linear layer to E, the paper's are not padded and their 2x2x8d output (64x64 frames) is E."""

    def __init__(self, cfg: ModelConfig, image_size: int):
        super().__init__()
        d, padding = cfg.cnn_depth, 1 if cfg.network == "notebook" else 0
        self.convs = nn.ModuleList([nn.Conv2d(c_in, c_out, 4, 2, padding)
                                    for c_in, c_out in [(3, d), (d, 2 * d), (2 * d, 4 * d), (4 * d, 8 * d)]])
        flat = 8 * d * conv_out_size(image_size) ** 2
        self.fc = nn.Linear(flat, cfg.embed_size) if cfg.network == "notebook" else None

    def forward(self, obs: Tensor) -> Tensor:
        hidden = obs.permute(0, 3, 1, 2)  # (N, 3, S, S), channels-last in memory, which oneDNN prefers
        for conv in self.convs:
            hidden = F.relu(conv(hidden))
        embed = hidden.flatten(1)  # (N, 8d * side^2)
        return self.fc(embed) if self.fc is not None else embed  # (N, E)


class Decoder(nn.Module):
    """(N, H+Z) -> (N, S, S, 3), pixels in [0, 1], then a sigmoid (the notebook) or nothing (the paper),
    `cfg.decoder_output`. The notebook's: a linear layer and ReLU to an s x s x 8d map, then the encoder
    mirrored with transposed convs. The paper's: a linear layer to a 1x1x32d map, then transposed
    convs of kernels 5, 5, 6, 6, stride 2 (1 -> 5 -> 13 -> 30 -> 64)."""

    def __init__(self, cfg: ModelConfig, image_size: int):
        super().__init__()
        d = cfg.cnn_depth
        features = cfg.belief_size + cfg.state_size
        self.squash = cfg.decoder_output == "sigmoid"
        if cfg.network == "notebook":
            self.side, self.fc_relu = conv_out_size(image_size), True
            self.fc = nn.Linear(features, 8 * d * self.side**2)
            layers = [(8 * d, 4 * d, 4, 1), (4 * d, 2 * d, 4, 1), (2 * d, d, 4, 1), (d, 3, 4, 1)]
        else:
            self.side, self.fc_relu = 1, False  # the official code has no activation after this layer
            self.fc = nn.Linear(features, 32 * d)
            layers = [(32 * d, 4 * d, 5, 0), (4 * d, 2 * d, 5, 0), (2 * d, d, 6, 0), (d, 3, 6, 0)]
        self.deconvs = nn.ModuleList([nn.ConvTranspose2d(c_in, c_out, kernel, 2, padding)
                                      for c_in, c_out, kernel, padding in layers])

    def forward(self, features: Tensor) -> Tensor:
        hidden = self.fc(features)
        hidden = (F.relu(hidden) if self.fc_relu else hidden).unflatten(1, (-1, self.side, self.side))  # (N, C, s, s)
        hidden = hidden.contiguous(memory_format=torch.channels_last)
        for deconv in self.deconvs[:-1]:
            hidden = F.relu(deconv(hidden))
        pixels = self.deconvs[-1](hidden)
        return (torch.sigmoid(pixels) if self.squash else pixels).permute(0, 2, 3, 1)  # (N, S, S, 3)


class RewardHead(nn.Module):
    """(N, H+Z) -> (N,): a 3-layer MLP."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        width = cfg.reward_hidden_size
        self.net = nn.Sequential(nn.Linear(cfg.belief_size + cfg.state_size, width), nn.ReLU(),
                                 nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 1))

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features).squeeze(-1)


def positive_std(raw: Tensor, min_std: float) -> Tensor:
    """The notebook's std: softplus with a floor, so no Gaussian collapses."""
    return F.softplus(raw) + min_std


def gru_gates(gate_in: Tensor, gate_h: Tensor, belief: Tensor) -> Tensor:
    """nn.GRUCell's update from its two matmuls, W_ih x + b_ih and W_hh h + b_hh, each (..., 3H) in
    its gate order (reset, update, new), and h (..., H) -> h' (..., H). Written out so that the packed
    planner (`planet.packed`) runs this same formula on its own matmuls, and so that any leading shape
    works (nn.GRUCell takes 2-D input only); the gates are sliced once into contiguous halves, which
    plans faster on a CPU than nn.GRUCell's strided chunks (docs/performance.md)."""
    size = belief.shape[-1]
    reset_update = torch.sigmoid(gate_in[..., : 2 * size] + gate_h[..., : 2 * size])  # (N, 2H)
    reset, update = reset_update[..., :size], reset_update[..., size:]
    candidate = torch.tanh(torch.addcmul(gate_in[..., 2 * size:], reset, gate_h[..., 2 * size:]))
    return torch.lerp(candidate, belief.to(candidate.dtype), update)  # (1 - z) n + z h


class RSSM(nn.Module):
    """Recurrent state-space model (paper Sec. 3, Fig. 2c)."""

    def __init__(self, cfg: ModelConfig, action_size: int):
        super().__init__()
        self.cfg = cfg
        # The paper's network embeds [s, a] (linear + ReLU) before the GRU; the notebook's feeds it raw.
        self.input_embed = nn.Linear(cfg.state_size + action_size, cfg.hidden_size) if cfg.network == "paper" else None
        gru_input = cfg.hidden_size if self.input_embed is not None else cfg.state_size + action_size
        self.gru = nn.GRUCell(gru_input, cfg.belief_size)
        # Mean and std heads stay separate layers: a fused (.., 2Z) output would leave both halves as
        # strided views, which made the eager bf16 plan slower on a CPU (docs/performance.md).
        self.prior_hidden = nn.Linear(cfg.belief_size, cfg.hidden_size)
        self.prior_mean = nn.Linear(cfg.hidden_size, cfg.state_size)
        self.prior_std = nn.Linear(cfg.hidden_size, cfg.state_size)
        self.posterior_hidden = nn.Linear(cfg.embed_size + cfg.belief_size, cfg.hidden_size)  # [e, h]
        self.posterior_mean = nn.Linear(cfg.hidden_size, cfg.state_size)
        self.posterior_std = nn.Linear(cfg.hidden_size, cfg.state_size)

    def initial(self, batch: int, device: torch.device) -> LatentState:
        """Zero belief (batch, H) and state (batch, Z): the start of every sequence and episode."""
        return LatentState(torch.zeros(batch, self.cfg.belief_size, device=device),
                           torch.zeros(batch, self.cfg.state_size, device=device))

    def _gaussian(self, hidden: Tensor, mean_layer: nn.Linear, std_layer: nn.Linear) -> Gaussian:
        return Gaussian(mean_layer(hidden), positive_std(std_layer(hidden), self.cfg.min_std))

    def _gru(self, inputs: Tensor, belief: Tensor) -> Tensor:
        """[s, a] (N, Z+A), h (N, H) -> h' (N, H)."""
        if self.input_embed is not None:
            inputs = F.relu(self.input_embed(inputs))  # (N, hidden)
        # nn.GRUCell's maths on its own weights (`gru_gates`), for any leading shape: overshooting
        # steps all (T-1, B) start times at once.
        gate_in = F.linear(inputs, self.gru.weight_ih, self.gru.bias_ih)  # (N, 3H): reset, update, new
        gate_h = F.linear(belief, self.gru.weight_hh, self.gru.bias_hh)
        return gru_gates(gate_in, gate_h, belief)

    def prior(self, belief: Tensor) -> Gaussian:
        """p(s_t | h_t): belief (..., H) -> Gaussian (..., Z)."""
        return self._gaussian(F.relu(self.prior_hidden(belief)), self.prior_mean, self.prior_std)

    def imagine_step(self, latent: LatentState, action: Tensor, noise: Tensor) -> tuple[LatentState, Gaussian]:
        """One open-loop step with the prior: (h, s), a -> (h', s' ~ p(s' | h'))."""
        belief = self._gru(torch.cat([latent.state, action], dim=-1), latent.belief)
        prior = self.prior(belief)
        return LatentState(belief, prior.sample(noise)), prior

    def posterior_step(self, latent: LatentState, action: Tensor, embed: Tensor,
                       noise: Tensor) -> tuple[LatentState, Gaussian]:
        """One filtering step: (h, s), a (N, A), e (N, E) -> (h', s' ~ q(s' | h', e)), q."""
        return self._posterior_step(latent, action, self._embed_part(embed), noise)

    def _embed_part(self, embed: Tensor) -> Tensor:
        """The embedding's share of the posterior's first layer, for any leading shape (..., E) -> (..., hidden)."""
        weight = self.posterior_hidden.weight[:, : self.cfg.embed_size]
        return F.linear(embed, weight, self.posterior_hidden.bias)

    def _posterior_step(self, latent: LatentState, action: Tensor, embed_part: Tensor,
                        noise: Tensor) -> tuple[LatentState, Gaussian]:
        """`posterior_step` with the embedding's share already applied: `observe` applies it to all T
        steps in one matmul, the concatenated [e, h] layer split in two."""
        belief = self._gru(torch.cat([latent.state, action], dim=-1), latent.belief)
        belief_part = F.linear(belief, self.posterior_hidden.weight[:, self.cfg.embed_size:])
        posterior = self._gaussian(F.relu(embed_part + belief_part), self.posterior_mean, self.posterior_std)
        return LatentState(belief, posterior.sample(noise)), posterior

    def observe(self, embed: Tensor, action: Tensor, latent: LatentState, noise: Tensor) -> Observed:
        """Filter a sequence: embed (T, B, E), action (T, B, A) = previous actions, noise (T, B, Z)."""
        embed_parts = self._embed_part(embed)  # (T, B, hidden), one matmul for all steps
        beliefs, states, means, stds = [], [], [], []
        for t in range(embed.shape[0]):
            latent, posterior = self._posterior_step(latent, action[t], embed_parts[t], noise[t])
            beliefs.append(latent.belief)
            states.append(latent.state)
            means.append(posterior.mean)
            stds.append(posterior.std)
        beliefs = torch.stack(beliefs)  # (T, B, H)
        return Observed(beliefs, torch.stack(states), self.prior(beliefs),
                        Gaussian(torch.stack(means), torch.stack(stds)))


class WorldModel(nn.Module):
    """Encoder, RSSM, decoder and reward head of one env's action size and frame size."""

    def __init__(self, cfg: ModelConfig, action_size: int, image_size: int):
        super().__init__()
        self.cfg = cfg
        self.action_size = action_size
        self.image_size = image_size
        self.encoder = Encoder(cfg, image_size)
        self.rssm = RSSM(cfg, action_size)
        self.decoder = Decoder(cfg, image_size)
        self.reward = RewardHead(cfg)

    @staticmethod
    def features(latent: LatentState) -> Tensor:
        """[h, s], what the decoder and the reward head see."""
        return torch.cat([latent.belief, latent.state], dim=-1)  # (..., H+Z)

    def encode(self, obs: Tensor) -> Tensor:
        """(..., S, S, 3) -> (..., E), all frames in one batch."""
        return self.encoder(obs.flatten(0, -4)).unflatten(0, obs.shape[:-3])

    def decode(self, features: Tensor) -> Tensor:
        """(..., H+Z) -> (..., S, S, 3), all frames in one batch."""
        return self.decoder(features.flatten(0, -2)).unflatten(0, features.shape[:-1])


def parameter_count(model: nn.Module) -> int:
    """Number of scalar parameters."""
    return sum(p.numel() for p in model.parameters())
