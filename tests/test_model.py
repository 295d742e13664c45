"""The U-Net: parameter count, shapes, output range, architecture options."""

from __future__ import annotations

import pytest
import torch

from bids_tspo.model.network import (
    AttentionBlock,
    ResidualBlock,
    SeparableConv3d,
    TSPOUNet,
    UNetConfig,
    count_parameters,
)


def test_parameter_count_matches_paper():
    n = count_parameters(TSPOUNet())
    assert 470_000 <= n <= 530_000  # paper: 490,401
    assert n == 490_593


@pytest.mark.parametrize("size", [16, 32])
def test_shape_and_range(size):
    torch.manual_seed(0)
    x = torch.rand(2, 1, size, size, size)
    with torch.no_grad():
        y = TSPOUNet()(x)
    assert y.shape == x.shape
    assert float(y.min()) > 0 and float(y.max()) < 1


def test_options_change_the_architecture():
    base = count_parameters(TSPOUNet())
    assert count_parameters(TSPOUNet(separable=False)) > 2 * base
    no_attn = TSPOUNet(use_attention=False)
    assert count_parameters(no_attn) < base
    assert not any(isinstance(m, AttentionBlock) for m in no_attn.modules())
    wide = TSPOUNet(channels=16)
    assert count_parameters(wide) < base
    assert TSPOUNet(UNetConfig(multipliers=(1, 1, 1), attention=(False, False, True)))(
        torch.rand(1, 1, 16, 16, 16)).shape == (1, 1, 16, 16, 16)


def test_blocks():
    block = ResidualBlock(64, 32)
    assert block(torch.rand(1, 64, 8, 8, 8)).shape == (1, 32, 8, 8, 8)
    sep = SeparableConv3d(32, 32)
    assert sep.depthwise.groups == 32 and sep.pointwise.kernel_size == (1, 1, 1)
    attn = AttentionBlock(32, heads=2)
    x = torch.rand(1, 32, 4, 4, 4)
    assert attn(x).shape == x.shape


def test_config_round_trip():
    cfg = UNetConfig(channels=16, separable=False)
    assert UNetConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("batch, channels, channels_last", [(2, 8, True), (3, 40, True),
                                                             (1, 64, False)])
def test_depthwise_backward_equals_the_library_convolution(batch, channels, channels_last):
    """The CPU training backward of the depthwise convolution (flipped-kernel input gradient,
    chunked grouped-convolution weight gradient, summed bias gradient) gives the library's
    gradients; 40 channels cross a chunk boundary."""
    from bids_tspo.model.depthwise import CHUNK, DepthwiseConv3d, _DepthwiseGrad

    assert 40 % CHUNK  # the 40-channel case ends in a partial chunk
    torch.manual_seed(0)
    conv = DepthwiseConv3d(channels)
    reference = torch.nn.Conv3d(channels, channels, 3, padding=1, groups=channels)
    reference.load_state_dict(conv.state_dict())   # same parameters, same keys
    x = torch.randn(batch, channels, 10, 12, 9)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    upstream = torch.randn(batch, channels, 10, 12, 9)
    grads = []
    for module in (conv, reference):
        xi = x.clone().requires_grad_()
        (module(xi) * upstream).sum().backward()
        grads.append((xi.grad, module.weight.grad, module.bias.grad))
    for ours, theirs in zip(*grads):
        assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    # the custom path runs only where it is faster: CPU training without autocast
    calls = []
    original = _DepthwiseGrad.apply
    _DepthwiseGrad.apply = lambda *a: calls.append(1) or original(*a)
    try:
        conv(x)
        with torch.no_grad():
            conv(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            conv(x)
    finally:
        _DepthwiseGrad.apply = original
    assert len(calls) == 1


@pytest.mark.parametrize("cfg", [UNetConfig(), UNetConfig(n_blocks=2, multipliers=(1, 2, 2, 2))])
def test_weights_of_the_flat_layout_load_unchanged(cfg):
    """Bundles written before the levels were named (flat ``down.<i>``/``up.<i>`` keys) load
    into the named levels and give the same maps."""
    from bids_tspo.model.network import level_keys

    torch.manual_seed(0)
    net = TSPOUNet(cfg).eval()
    flat_of = {new: old for old, new in level_keys(cfg).items()}
    flat = {}
    for key, value in net.state_dict().items():
        module = next((m for m in flat_of if key.startswith(m + ".")), None)
        flat[key.replace(module, flat_of[module], 1) if module else key] = value
    assert any(k.startswith("down.") for k in flat) and any(k.startswith("up.") for k in flat)
    assert not any(k.startswith(("encoder.", "decoder.")) for k in flat)
    loaded = TSPOUNet(cfg).eval()
    loaded.load_state_dict(flat)
    x = torch.rand(1, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.equal(net(x), loaded(x))
