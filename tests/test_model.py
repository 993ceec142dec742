import dataclasses

import torch

from planet.config import ModelConfig
from planet.model import WorldModel, parameter_count


def test_the_notebooks_sizes_give_its_parameter_count():
    assert parameter_count(WorldModel(ModelConfig(), action_size=1, image_size=64)) == 7_310_436


def test_shapes(tiny_model_cfg, device):
    model = WorldModel(dataclasses.replace(tiny_model_cfg, decoder_output="sigmoid"), action_size=2, image_size=32)
    model = model.to(device)
    steps, batch = 5, 3
    obs = torch.rand(steps, batch, 32, 32, 3, device=device)
    embed = model.encode(obs)
    assert embed.shape == (steps, batch, 32) and embed.device.type == device.type
    observed = model.rssm.observe(embed, torch.zeros(steps, batch, 2, device=device), model.rssm.initial(batch, device),
                                  torch.randn(steps, batch, 4, device=device))
    assert observed.beliefs.shape == (steps, batch, 16) and observed.states.shape == (steps, batch, 4)
    assert observed.prior.mean.shape == observed.posterior.std.shape == (steps, batch, 4)
    assert (observed.prior.std >= 0.1).all() and (observed.posterior.std >= 0.1).all()  # the std floor
    features = torch.cat([observed.beliefs, observed.states], -1)
    recon = model.decode(features)
    assert recon.shape == obs.shape and recon.min() >= 0 and recon.max() <= 1
    assert model.reward(features).shape == (steps, batch)


def test_written_out_gru_matches_torch_gru_cell(tiny_model_cfg):
    rssm = WorldModel(tiny_model_cfg, 1, 16).rssm
    inputs, belief = torch.randn(7, 5), torch.randn(7, 16)
    assert torch.allclose(rssm._gru(inputs, belief), rssm.gru(inputs, belief), atol=1e-6)


def test_split_posterior_layer_equals_the_concatenated_one(tiny_model_cfg):
    rssm = WorldModel(tiny_model_cfg, 1, 16).rssm
    latent = rssm.initial(3, torch.device("cpu"))
    embed, action, noise = torch.randn(3, 32), torch.randn(3, 1), torch.zeros(3, 4)
    _, posterior = rssm.posterior_step(latent, action, embed, noise)
    belief = rssm.gru(torch.cat([latent.state, action], -1), latent.belief)
    hidden = torch.relu(rssm.posterior_hidden(torch.cat([embed, belief], -1)))
    assert torch.allclose(posterior.mean, rssm.posterior_mean(hidden), atol=1e-6)


def test_decoder_output_sigmoid_or_linear_same_parameters():
    sigmoid = WorldModel(ModelConfig(decoder_output="sigmoid"), action_size=1, image_size=64)
    linear = WorldModel(ModelConfig(decoder_output="linear"), action_size=1, image_size=64)
    assert parameter_count(linear) == parameter_count(sigmoid)
    linear.load_state_dict(sigmoid.state_dict())
    features = torch.randn(4, 230) * 50  # large enough to saturate a sigmoid
    with torch.no_grad():
        squashed, raw = sigmoid.decoder(features), linear.decoder(features)
    assert squashed.shape == raw.shape == (4, 64, 64, 3)
    assert torch.allclose(squashed, torch.sigmoid(raw), atol=1e-6)
    assert 0 <= squashed.min() and squashed.max() <= 1 and (raw.min() < 0 or raw.max() > 1)


def test_paper_network_shapes_and_parameter_count():
    """The official code's stacks: four unpadded 4x4/2 convs to 2x2x256 = the 1,024-d embedding, a
    linear layer to a 1x1x1024 map and deconvs of kernels 5, 5, 6, 6, and a linear [s, a] embedding."""
    cfg = ModelConfig(network="paper", hidden_size=200, cnn_depth=32, embed_size=1024)
    model = WorldModel(cfg, action_size=1, image_size=64)
    assert parameter_count(model) == 5_295_820
    assert [conv.padding for conv in model.encoder.convs] == [(0, 0)] * 4
    assert [deconv.kernel_size for deconv in model.decoder.deconvs] == [(5, 5), (5, 5), (6, 6), (6, 6)]
    assert tuple(model.rssm.input_embed.weight.shape) == (200, 30 + 1)
    obs = torch.rand(2, 3, 64, 64, 3)
    embed = model.encode(obs)
    assert embed.shape == (2, 3, 1024)
    with torch.no_grad():
        assert model.decode(torch.randn(2, 3, 230)).shape == obs.shape
