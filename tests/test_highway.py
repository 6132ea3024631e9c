"""Highway block: y = H(x) T(x) + C(x) (1 - T(x)); parameter counts, gate initialisation,
near-identity start, gate logging, shapes, gradients and argument checks."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from convzoo.models.layers.highway import HighwayBlock
from convzoo.models.registry import get_block


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def relative_change(block: HighwayBlock, seed: int) -> float:
    torch.manual_seed(seed)
    x = torch.randn(4, block.in_channels, 16, 16)
    with torch.no_grad():
        y = block(x)
    return ((y - x).norm() / x.norm()).item()


@pytest.mark.parametrize("cin,cout,stride,k", [(8, 8, 1, 3), (4, 8, 1, 3), (8, 8, 2, 5), (4, 6, 2, 1)])
def test_params_closed_form(cin, cout, stride, k):
    # H: k^2 C_in C_out conv (no bias) + BN; T: k^2 C_in C_out conv + bias; carry: 1x1 + BN if needed.
    expected = 2 * k * k * cin * cout + 2 * cout + cout
    if stride != 1 or cin != cout:
        expected += cin * cout + 2 * cout
    assert n_params(HighwayBlock(cin, cout, stride=stride, kernel_size=k)) == expected


@pytest.mark.parametrize("gate_bias", [-3.0, -2.0, -1, 0.5])
def test_gate_bias_is_initialised(gate_bias):
    block = HighwayBlock(4, 4, gate_bias=gate_bias)
    assert torch.all(block.gate.bias == gate_bias)
    assert block.gate_bias == float(gate_bias)


def test_init_weights_restores_gate_bias():
    block = HighwayBlock(4, 4, gate_bias=-3.0)
    nn.init.zeros_(block.gate.bias)  # what a network's generic init does to conv biases
    block.init_weights()
    assert torch.all(block.gate.bias == -3.0)


def test_forward_is_the_highway_formula():
    block = HighwayBlock(4, 8, stride=2).eval()
    nn.init.normal_(block.gate.weight)  # spread the gates away from sigmoid(-2)
    x = torch.randn(2, 4, 7, 7)
    h, t, c = block.transform(x), torch.sigmoid(block.gate(x)), block.carry(x)
    torch.testing.assert_close(block(x), h * t + c * (1 - t))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_fresh_block_nearly_passes_its_input_through(seed):
    # Measured over 1,000 seeds (8 channels, 4x16x16 input, gate_bias -2, eval mode):
    # |y - x| / |x| in [0.148, 0.168], mean 0.157. Bounds with a small margin either side.
    torch.manual_seed(seed)
    block = HighwayBlock(8, 8).eval()
    assert 0.13 < relative_change(block, seed) < 0.18


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_pass_through_error_grows_as_gate_bias_goes_to_zero(seed):
    changes = []
    for gate_bias in [-4.0, -3.0, -2.0, -1.0, 0.0]:
        torch.manual_seed(seed)  # same weights every time: only the gate bias differs
        changes.append(relative_change(HighwayBlock(8, 8, gate_bias=gate_bias).eval(), seed))
    assert all(a < b for a, b in zip(changes, changes[1:])), changes
    assert changes[0] < 0.04 and changes[-1] > 0.4  # measured: ~0.026 at -4, ~0.55 at 0


def test_last_gate_mean():
    block = HighwayBlock(4, 4, gate_bias=-2.0)
    assert block.last_gate_mean is None
    x = torch.randn(2, 4, 8, 8)
    block(x).sum().backward()
    mean = block.last_gate_mean
    assert isinstance(mean, float)
    assert mean == pytest.approx(torch.sigmoid(block.gate(x)).mean().item(), rel=1e-6)
    assert block.gate_mean.ndim == 0 and not block.gate_mean.requires_grad
    assert 0.05 < mean < 0.25  # sigmoid(-2) = 0.119, spread by the random gate weights
    nn.init.constant_(block.gate.bias, 5.0)
    block(x)
    assert block.last_gate_mean > 0.9  # it follows the latest forward


@pytest.mark.parametrize("cin,cout,stride", [(4, 4, 1), (4, 8, 2)])
def test_every_parameter_gets_a_gradient(cin, cout, stride):
    torch.manual_seed(0)
    block = HighwayBlock(cin, cout, stride=stride).train()
    y = block(torch.randn(4, cin, 6, 6))
    (y * torch.randn_like(y)).sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("k", [1, 3, 5])
def test_shapes(k):
    assert HighwayBlock(4, 4, kernel_size=k)(torch.randn(2, 4, 8, 8)).shape == (2, 4, 8, 8)
    assert HighwayBlock(4, 8, stride=2, kernel_size=k)(torch.randn(2, 4, 8, 8)).shape == (2, 8, 4, 4)
    assert HighwayBlock(4, 8, stride=2, kernel_size=k)(torch.randn(2, 4, 7, 7)).shape == (2, 8, 4, 4)


def test_identity_carry_and_projection():
    assert isinstance(HighwayBlock(4, 4).carry, nn.Identity)
    assert isinstance(HighwayBlock(4, 4, carry="error").carry, nn.Identity)
    assert HighwayBlock(4, 8, stride=2).carry.conv.stride == (2, 2)


def test_bf16_autocast_with_identity_carry():
    block = HighwayBlock(4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = block(torch.randn(2, 4, 6, 6))  # fp32 carry mixed with bf16 transform and gate
    assert y.shape == (2, 4, 6, 6) and torch.isfinite(y).all()


def test_registered_and_generic_calling_form():
    assert get_block("highway") is HighwayBlock
    block = get_block("highway")(8, 16, stride=2)
    assert (block.in_channels, block.out_channels, block.stride) == (8, 16, 2)


@pytest.mark.parametrize("make,match", [
    (lambda: HighwayBlock(4, 8, carry="error"), "carry='error'.*in_channels=4.*out_channels=8"),
    (lambda: HighwayBlock(4, 4, stride=2, carry="error"), "carry='error'.*stride=2"),
    (lambda: HighwayBlock(4, 4, carry="gate"), "carry.*'gate'"),
    (lambda: HighwayBlock(4, 4, stride=3), "stride.*3"),
    (lambda: HighwayBlock(0, 4), "in_channels.*0"),
    (lambda: HighwayBlock(4, 4, kernel_size=0), "kernel_size.*0"),
    (lambda: HighwayBlock(4, 4, kernel_size=4), "odd kernel_size"),
    (lambda: HighwayBlock(4, 4, gate_bias="low"), "gate_bias.*'low'"),
])
def test_bad_arguments_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()
