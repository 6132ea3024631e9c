"""Residual and ResNeXt blocks: closed-form parameter counts, shortcut maths, zero-init identity,
shapes, gradients and argument checks."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from convzoo.models.layers.arithmetic import conv_output_size
from convzoo.models.layers.conv import ConvNormAct
from convzoo.models.layers.residual import (BasicBlock, Bottleneck, PlainBlock, PreActBlock, ShortcutA,
                                    make_shortcut)
from convzoo.models.layers.resnext import ResNeXtBlock
from convzoo.models.registry import create_model, get_block


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


SHAPES = [(4, 4, 1), (4, 8, 1), (4, 8, 2), (8, 8, 2), (6, 10, 2)]  # (C_in, C_out, stride)


# ---------------------------------------------------------------- parameter counts (closed forms)
@pytest.mark.parametrize("cin,cout,stride", SHAPES)
def test_basic_block_params_closed_form(cin, cout, stride):
    # Two 3x3 convs without bias, two BNs (gamma, beta): 9 C_out (C_in + C_out) + 4 C_out.
    body = 9 * cout * (cin + cout) + 4 * cout
    changes = stride != 1 or cin != cout
    assert n_params(BasicBlock(cin, cout, stride=stride, shortcut="A")) == body
    # Option B adds a 1x1 projection (no bias) + BN only when the shape changes.
    projection = cin * cout + 2 * cout if changes else 0
    assert n_params(BasicBlock(cin, cout, stride=stride, shortcut="B")) == body + projection


@pytest.mark.parametrize("cin,cout,stride", SHAPES)
def test_plain_block_params_equal_basic_block_with_shortcut_a(cin, cout, stride):
    plain = PlainBlock(cin, cout, stride=stride)
    basic = BasicBlock(cin, cout, stride=stride, shortcut="A")
    assert n_params(plain) == n_params(basic) == 9 * cout * (cin + cout) + 4 * cout
    # Same parameter names and shapes too, so state dicts are interchangeable.
    assert {k: v.shape for k, v in plain.state_dict().items()} == \
        {k: v.shape for k, v in basic.state_dict().items()}


@pytest.mark.parametrize("cin,cout,stride,expansion,groups",
                         [(16, 16, 1, 4, 1), (8, 16, 2, 4, 1), (16, 32, 1, 2, 2), (32, 32, 2, 4, 4)])
def test_bottleneck_params_closed_form(cin, cout, stride, expansion, groups):
    w = cout // expansion
    expected = (cin * w + 2 * w                    # 1x1 reduce + BN
                + 9 * w * (w // groups) + 2 * w    # grouped 3x3 + BN
                + w * cout + 2 * cout)             # 1x1 expand + BN
    if stride != 1 or cin != cout:
        expected += cin * cout + 2 * cout          # projection shortcut
    block = Bottleneck(cin, cout, stride=stride, expansion=expansion, groups=groups)
    assert block.width == w
    assert n_params(block) == expected


@pytest.mark.parametrize("cin,cout,stride", SHAPES)
def test_preact_block_params_closed_form(cin, cout, stride):
    # BN on the input (C_in), conv, BN, conv; the projection is a bare 1x1 conv (no norm, no bias).
    expected = 2 * cin + 9 * cin * cout + 2 * cout + 9 * cout * cout
    if stride != 1 or cin != cout:
        expected += cin * cout
    assert n_params(PreActBlock(cin, cout, stride=stride)) == expected


@pytest.mark.parametrize("cin,cout,stride,card,bw", [(8, 16, 1, 2, 4), (16, 16, 2, 4, 2), (16, 16, 1, 8, 1)])
def test_resnext_params_closed_form(cin, cout, stride, card, bw):
    d = card * bw
    expected = cin * d + 2 * d + 9 * d * bw + 2 * d + d * cout + 2 * cout
    if stride != 1 or cin != cout:
        expected += cin * cout + 2 * cout
    block = ResNeXtBlock(cin, cout, stride=stride, cardinality=card, bottleneck_width=bw)
    assert block.conv2.conv.groups == card and block.width == d
    assert n_params(block) == expected


def resnext29_2x64d(**override) -> nn.Sequential:
    """ResNeXt-29 2x64d for CIFAR, as configs/model/resnext29_2x64d.yaml should build it."""
    layers, cin = [ConvNormAct(3, 64, 3)], 64
    for out, stride, bw in [(256, 1, 64), (512, 2, 128), (1024, 2, 256)]:
        for i in range(3):
            args = {"width": 2 * bw} if override.get("use_width") else {"bottleneck_width": bw}
            layers.append(ResNeXtBlock(cin, out, stride=stride if i == 0 else 1, cardinality=2, **args))
            cin = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1024, 10))


def test_resnext29_2x64d_parameter_count():
    net = resnext29_2x64d()
    count = n_params(net)
    print(f"ResNeXt-29 2x64d (3x3 stem, 10 classes): {count:,} parameters")
    # Widely used CIFAR implementations report ~9.13M (their stem is a 1x1 conv, 1,536 fewer).
    assert count == 9_130_314
    assert abs(count - 9.1e6) / 9.1e6 < 0.02
    assert [b.width for b in net if isinstance(b, ResNeXtBlock)] == [128] * 3 + [256] * 3 + [512] * 3
    assert n_params(resnext29_2x64d(use_width=True)) == count  # `width` is the same knob
    assert net.eval()(torch.randn(1, 3, 8, 8)).shape == (1, 10)


# ---------------------------------------------------------------- shortcuts
def test_shortcut_a_has_no_parameters():
    assert n_params(ShortcutA(4, 8, 2)) == 0
    assert isinstance(make_shortcut("A", 4, 8, 2), ShortcutA)
    assert n_params(BasicBlock(4, 8, stride=2, shortcut="A").shortcut) == 0


@settings(max_examples=30, deadline=None)
@given(cin=st.integers(1, 6), extra=st.integers(0, 6), stride=st.sampled_from([1, 2]),
       h=st.integers(1, 9), w=st.integers(1, 9), pad=st.sampled_from(["end", "both"]))
def test_shortcut_a_is_strided_identity_with_zero_channels(cin, extra, stride, h, w, pad):
    x = torch.randn(2, cin, h, w)
    y = ShortcutA(cin, cin + extra, stride, pad)(x)
    before = extra // 2 if pad == "both" else 0  # "both": the smaller half of the zeros first
    assert y.shape == (2, cin + extra, math.ceil(h / stride), math.ceil(w / stride))
    assert torch.equal(y[:, before:before + cin], x[:, :, ::stride, ::stride])
    assert torch.all(y[:, :before] == 0) and torch.all(y[:, before + cin:] == 0)


def test_resnet_configs_pad_option_a_as_the_pretrained_weights_expect():
    # akamaster's option A: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))
    x = torch.randn(2, 16, 8, 8)
    y = ShortcutA(16, 32, 2, "both")(x)
    assert torch.all(y[:, :8] == 0) and torch.all(y[:, 24:] == 0)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    shortcuts = [m for m in create_model("resnet20").modules() if isinstance(m, ShortcutA)]
    assert len(shortcuts) == 2 and all(m.pad == "both" for m in shortcuts)
    # where the zeros go changes no parameter
    assert n_params(BasicBlock(16, 32, stride=2, shortcut="A", shortcut_pad="both")) == \
        n_params(BasicBlock(16, 32, stride=2, shortcut="A"))
    with pytest.raises(ValueError, match="shortcut_pad"):
        BasicBlock(16, 32, stride=2, shortcut="A", shortcut_pad="middle")


def test_make_shortcut_identity_and_projection():
    assert isinstance(make_shortcut("A", 8, 8, 1), nn.Identity)
    assert isinstance(make_shortcut("B", 8, 8, 1), nn.Identity)
    proj = make_shortcut("B", 4, 8, 2)
    assert isinstance(proj, ConvNormAct) and proj.conv.kernel_size == (1, 1)
    assert proj.conv.stride == (2, 2) and proj.conv.bias is None


def test_preact_projection_takes_preactivated_input():
    block = PreActBlock(4, 8, stride=2).eval()
    nn.init.normal_(block.norm1.running_mean)  # make BN(x) differ from x
    seen = {}
    block.shortcut.register_forward_hook(lambda m, inp, out: seen.update(x=inp[0]))
    x = torch.randn(2, 4, 6, 6)
    block(x)
    assert torch.equal(seen["x"], block.act1(block.norm1(x)))


def test_preact_identity_and_a_shortcuts_take_raw_input():
    for block in (PreActBlock(4, 4).eval(), PreActBlock(4, 8, stride=2, shortcut="A").eval()):
        nn.init.zeros_(block.conv2.conv.weight)  # the output is the shortcut alone
        x = torch.randn(2, 4, 6, 6)  # negative entries: would be clipped if pre-activated
        assert torch.equal(block(x)[:, :4], x[:, :, ::block.stride, ::block.stride])


# ---------------------------------------------------------------- zero_init_residual
@pytest.mark.parametrize("make", [
    lambda: BasicBlock(8, 8, zero_init_residual=True),
    lambda: BasicBlock(8, 8, shortcut="A", zero_init_residual=True),
    lambda: Bottleneck(8, 8, expansion=2, zero_init_residual=True),
    lambda: ResNeXtBlock(8, 8, cardinality=2, bottleneck_width=2, zero_init_residual=True),
    lambda: BasicBlock(8, 8, norm_layer=None, zero_init_residual=True),
])
def test_zero_init_residual_block_is_identity(make):
    block = make().eval()
    x = torch.randn(2, 8, 6, 6)
    assert torch.equal(block(x), torch.relu(x))  # act(0 + x)
    x = torch.relu(x)
    assert torch.equal(block(x), x)  # on non-negative input: exactly the identity
    # The same block without zero init is not the identity (so the test can fail).
    torch.manual_seed(0)
    fresh = make().eval()
    for m in fresh.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight)
    assert not torch.allclose(fresh(x), x)


def test_zero_init_preact_block_is_exact_identity():
    block = PreActBlock(8, 8, zero_init_residual=True).eval()
    x = torch.randn(2, 8, 6, 6)  # any sign: nothing follows the addition
    assert torch.equal(block(x), x)
    assert torch.count_nonzero(block.conv2.conv.weight) == 0


def test_zero_init_with_projection_returns_act_of_shortcut():
    block = BasicBlock(4, 8, stride=2, zero_init_residual=True).eval()
    x = torch.randn(2, 4, 6, 6)
    assert torch.equal(block(x), torch.relu(block.shortcut(x)))


def generic_init(block: nn.Module) -> None:
    """What a network's generic init does (Net.init_weights): it undoes a block's own rules."""
    for m in block.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)


@pytest.mark.parametrize("cls", [BasicBlock, Bottleneck, PreActBlock, ResNeXtBlock])
def test_init_weights_reapplies_zero_init(cls):
    block = cls(8, 8, zero_init_residual=True).eval()
    x = torch.relu(torch.randn(2, 8, 5, 5))
    generic_init(block)
    assert not torch.equal(block(x), x)
    block.init_weights()
    assert torch.equal(block(x), x)


def test_width_is_a_channel_arg():
    # Net scales the arguments named in channel_args with its width_mult.
    assert Bottleneck.channel_args == ResNeXtBlock.channel_args == ("width",)


# ---------------------------------------------------------------- shapes and gradients
BLOCKS = {
    "basic_a": lambda i, o, **k: BasicBlock(i, o, shortcut="A", **k),
    "basic_b": lambda i, o, **k: BasicBlock(i, o, **k),
    "plain": lambda i, o, **k: PlainBlock(i, o, **k),
    "preact": lambda i, o, **k: PreActBlock(i, o, **k),
    "bottleneck": lambda i, o, **k: Bottleneck(i, o * 2, expansion=2, **k),
    "resnext": lambda i, o, **k: ResNeXtBlock(i, o * 2, cardinality=2, bottleneck_width=2, **k),
}


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(BLOCKS)), cin=st.integers(1, 6), extra=st.integers(0, 4),
       stride=st.sampled_from([1, 2]), dilation=st.integers(1, 3), h=st.integers(1, 9),
       w=st.integers(1, 9))
def test_output_shape_follows_conv_arithmetic(name, cin, extra, stride, dilation, h, w):
    block = BLOCKS[name](cin, cin + extra, stride=stride, dilation=dilation).eval()
    y = block(torch.randn(2, cin, h, w))
    # A 3x3 conv padded by the dilation: floor((W + 2D - 2D - 1) / S) + 1 = ceil(W / S).
    out_h, out_w = (conv_output_size(s, 3, stride, dilation, dilation) for s in (h, w))
    assert (out_h, out_w) == (math.ceil(h / stride), math.ceil(w / stride))
    assert y.shape == (2, block.out_channels, out_h, out_w)


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_stride_two_halves_and_dilation_keeps_size(name):
    assert BLOCKS[name](4, 8, stride=2)(torch.randn(2, 4, 8, 8)).shape[2:] == (4, 4)
    dilated = BLOCKS[name](4, 8, dilation=2)
    assert dilated(torch.randn(2, 4, 8, 8)).shape[2:] == (8, 8)
    three = [m for m in dilated.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert three and all(m.dilation == (2, 2) and m.padding == (2, 2) for m in three)


@pytest.mark.parametrize("name", sorted(BLOCKS))
@pytest.mark.parametrize("cin,cout,stride", [(4, 4, 1), (4, 8, 2)])
def test_every_parameter_gets_a_gradient(name, cin, cout, stride):
    torch.manual_seed(0)
    block = BLOCKS[name](cin, cout, stride=stride).train()
    x = torch.randn(4, cin, 6, 6)
    y = block(x)
    assert torch.isfinite(y).all()
    (y * torch.randn_like(y)).sum().backward()
    for pname, p in block.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("make", [lambda: PreActBlock(4, 4, norm_layer=None),
                                  lambda: BasicBlock(4, 4), lambda: PlainBlock(4, 4)])
def test_forward_does_not_modify_the_input(make):
    x = torch.randn(2, 4, 5, 5)
    before = x.clone()
    make()(x)
    assert torch.equal(x, before)


# ---------------------------------------------------------------- registry and arguments
@pytest.mark.parametrize("name,cls", [("basic", BasicBlock), ("bottleneck", Bottleneck),
                                      ("preact", PreActBlock), ("plain", PlainBlock),
                                      ("resnext", ResNeXtBlock)])
def test_registered_and_generic_calling_form(name, cls):
    assert get_block(name) is cls
    block = get_block(name)(8, 16, stride=2)  # how the generic Net calls every block
    assert (block.in_channels, block.out_channels, block.stride) == (8, 16, 2)


@pytest.mark.parametrize("make,match", [
    (lambda: BasicBlock(4, 4, stride=3), "stride.*3"),
    (lambda: PreActBlock(4, 4, stride=0), "stride.*0"),
    (lambda: BasicBlock(4, 4, shortcut="C"), "shortcut.*'C'"),
    (lambda: BasicBlock(8, 4, shortcut="A"), "in_channels=8 > out_channels=4"),
    (lambda: PreActBlock(8, 4, stride=2, shortcut="A"), "shortcut 'A'"),
    (lambda: make_shortcut("C", 4, 4, 1), "shortcut"),
    (lambda: BasicBlock(0, 4), "in_channels.*0"),
    (lambda: PlainBlock(4, -1), "out_channels.*-1"),
    (lambda: BasicBlock(4, 4, dilation=0), "dilation.*0"),
    (lambda: Bottleneck(4, 10, expansion=4), "expansion=4 does not divide out_channels=10"),
    (lambda: Bottleneck(4, 16, width=6, groups=4), "groups=4 does not divide width=6"),
    (lambda: ResNeXtBlock(4, 16, cardinality=3, width=8), "cardinality=3 does not divide width=8"),
    (lambda: ResNeXtBlock(4, 16, cardinality=0), "cardinality.*0"),
])
def test_bad_arguments_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()
