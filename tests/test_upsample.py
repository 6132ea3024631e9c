"""Transposed-conv and resize-conv upsampling blocks, and the checkerboard measure."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from convzoo.models.layers.arithmetic import conv_transpose_output_size
from convzoo.models.layers.upsample import ResizeConvUp, TransposedConvUp, checkerboard_score, transposed_padding
from convzoo.models.registry import get_block

FAST = settings(max_examples=40, deadline=None)


@pytest.mark.parametrize("kernel, stride, expected", [(4, 2, (1, 0)), (3, 2, (1, 1)), (2, 2, (0, 0)),
                                                      (3, 1, (1, 0)), (1, 2, (0, 1)), (6, 3, (2, 1))])
def test_transposed_padding_examples(kernel, stride, expected):
    assert transposed_padding(kernel, stride) == expected


@FAST
@given(st.integers(1, 8), st.integers(1, 4), st.integers(1, 9))
def test_transposed_padding_gives_input_times_stride(kernel, stride, size):
    if stride == 1 and kernel % 2 == 0:  # K - S odd at stride 1: no output_padding < 1 can fix it
        with pytest.raises(ValueError, match="odd kernel_size"):
            transposed_padding(kernel, stride)
        return
    padding, output_padding = transposed_padding(kernel, stride)
    assert padding >= 0 and 0 <= output_padding < stride
    assert conv_transpose_output_size(size, kernel, stride, padding, output_padding) == size * stride


@FAST
@given(st.integers(1, 3), st.sampled_from([None, 1, 2, 3, 4, 5]), st.integers(1, 5))
def test_transposed_conv_up_output_is_input_times_stride(stride, kernel, size):
    if stride == 1 and kernel is not None and kernel % 2 == 0:
        with pytest.raises(ValueError):
            TransposedConvUp(2, 3, stride=stride, kernel_size=kernel)
        return
    block = TransposedConvUp(2, 3, stride=stride, kernel_size=kernel).eval()
    assert block(torch.randn(2, 2, size, size + 1)).shape == (2, 3, size * stride, (size + 1) * stride)
    assert (block.in_channels, block.out_channels, block.stride) == (2, 3, stride)


def test_transposed_conv_up_defaults_and_structure():
    block = TransposedConvUp(4, 8)
    conv = block.conv
    assert isinstance(conv, nn.ConvTranspose2d)
    assert (conv.kernel_size, conv.stride, conv.padding, conv.output_padding) == ((4, 4), (2, 2), (1, 1), (0, 0))
    assert conv.bias is None and isinstance(block.norm, nn.BatchNorm2d) and isinstance(block.act, nn.ReLU)
    plain = TransposedConvUp(4, 8, norm_layer=None, act_layer=None)
    assert plain.conv.bias is not None  # no norm to absorb the shift
    assert isinstance(plain.norm, nn.Identity) and isinstance(plain.act, nn.Identity)
    assert TransposedConvUp(4, 8, stride=3).conv.kernel_size == (6, 6)  # 2 * stride
    assert TransposedConvUp(4, 8, stride=1).conv.kernel_size == (3, 3)


def test_transposed_conv_up_solves_the_missing_padding():
    assert TransposedConvUp(2, 2, kernel_size=3, padding=1).conv.output_padding == (1, 1)
    assert TransposedConvUp(2, 2, kernel_size=3, output_padding=1).conv.padding == (1, 1)
    block = TransposedConvUp(2, 2, kernel_size=3, padding=0, output_padding=0)  # explicit: 2W + 1
    assert block(torch.randn(1, 2, 4, 4)).shape[-1] == 9


@pytest.mark.parametrize("kwargs, match", [
    (dict(stride=0), "stride"), (dict(kernel_size=0), "kernel_size"), (dict(padding=-1), "padding"),
    (dict(output_padding=2), "output_padding"), (dict(kernel_size=4, output_padding=1), "output_padding"),
    (dict(stride=1, kernel_size=4), "odd kernel_size"), (dict(norm_layer="nope"), "norm_layer"),
])
def test_transposed_conv_up_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TransposedConvUp(2, 3, **kwargs)


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("factor", [1, 2, 3])
def test_resize_conv_up_shape(mode, factor):
    block = ResizeConvUp(3, 5, scale_factor=factor, mode=mode).eval()
    assert block(torch.randn(2, 3, 4, 6)).shape == (2, 5, 4 * factor, 6 * factor)
    assert (block.in_channels, block.out_channels, block.stride) == (3, 5, factor)


def test_resize_conv_up_is_conv_of_resized_input():
    block = ResizeConvUp(2, 3, mode="nearest", norm_layer=None, act_layer=None)
    x = torch.randn(1, 2, 3, 3)
    resized = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # nearest, by hand
    torch.testing.assert_close(block(x), block.conv(resized))


def test_resize_conv_up_accepts_stride_from_the_generic_network():
    assert ResizeConvUp(2, 2, stride=3).scale_factor == 3
    assert ResizeConvUp(2, 2, stride=2, scale_factor=2).stride == 2
    assert ResizeConvUp(2, 2).stride == 2
    with pytest.raises(ValueError, match="disagree"):
        ResizeConvUp(2, 2, stride=2, scale_factor=3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(mode="bicubic"), "mode"), (dict(scale_factor=0), "scale_factor"),
    (dict(kernel_size=4), "odd"), (dict(act_layer="nope"), "act_layer"),
])
def test_resize_conv_up_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ResizeConvUp(2, 3, **kwargs)


def test_blocks_are_registered():
    assert get_block("transposed_up") is TransposedConvUp
    assert get_block("resize_up") is ResizeConvUp


def test_blocks_work_in_the_generic_calling_form():
    for name in ("transposed_up", "resize_up"):
        block = get_block(name)(4, 2, stride=2).eval()
        assert block(torch.randn(1, 4, 5, 5)).shape == (1, 2, 10, 10)


# --- checkerboard_score -----------------------------------------------------------------

def test_checkerboard_of_overlapping_transposed_conv():
    # k=3, s=2: per axis, interior pixels alternately receive 1 and 2 taps; in 2-D 1, 2 or 4.
    score = checkerboard_score(nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1))
    assert score == pytest.approx(0.75)
    assert checkerboard_score(TransposedConvUp(3, 4, kernel_size=3)) == pytest.approx(0.75)


def test_no_checkerboard_when_kernel_is_a_multiple_of_stride():
    assert checkerboard_score(nn.ConvTranspose2d(3, 4, 4, stride=2, padding=1)) < 1e-6
    assert checkerboard_score(TransposedConvUp(3, 4)) < 1e-6
    assert checkerboard_score(TransposedConvUp(3, 4, stride=3, kernel_size=6)) < 1e-6


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_resize_conv_has_no_checkerboard(mode):
    assert checkerboard_score(ResizeConvUp(3, 4, mode=mode)) < 1e-6
    assert checkerboard_score(ResizeConvUp(3, 4, mode=mode, scale_factor=3, kernel_size=5)) < 1e-6


@FAST
@given(st.integers(1, 7), st.integers(1, 4), st.data())
def test_checkerboard_is_zero_iff_kernel_is_a_multiple_of_stride(kernel, stride, data):
    padding = data.draw(st.integers(0, (kernel - 1) // 2))
    conv = nn.ConvTranspose2d(1, 2, kernel, stride=stride, padding=padding)
    score = checkerboard_score(conv, size=10)
    if kernel % stride == 0:
        assert score < 1e-9
    else:
        assert score > 0.1


def test_checkerboard_of_decoder_stacks():
    # Artifacts compound through a stack; one even layer among odd ones does not remove them.
    odd = nn.Sequential(TransposedConvUp(8, 4, kernel_size=3), TransposedConvUp(4, 2, kernel_size=3),
                        nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1), nn.Sigmoid())
    even = nn.Sequential(TransposedConvUp(8, 4), TransposedConvUp(4, 2),
                         nn.ConvTranspose2d(2, 3, 4, stride=2, padding=1), nn.Sigmoid())
    resize = nn.Sequential(ResizeConvUp(8, 4, mode="bilinear"), ResizeConvUp(4, 2),
                           nn.Conv2d(2, 3, 3, padding="same"), nn.Tanh())
    assert checkerboard_score(odd) > 0.1
    assert checkerboard_score(even) < 1e-6
    assert checkerboard_score(resize) < 1e-6


def test_checkerboard_ignores_trained_weights_and_leaves_the_module_alone():
    block = TransposedConvUp(3, 4, kernel_size=3)
    block.train()
    with torch.no_grad():
        block.conv.weight.normal_()
        block.norm.running_mean.fill_(5.0)
    before = {k: v.clone() for k, v in block.state_dict().items()}
    assert checkerboard_score(block) == pytest.approx(0.75)
    assert block.training and block.conv.weight.dtype == torch.float32
    for key, value in block.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_checkerboard_needs_a_big_enough_input_and_a_conv():
    with pytest.raises(ValueError, match="larger size"):
        checkerboard_score(nn.ConvTranspose2d(1, 1, 8, stride=2), size=2)
    with pytest.raises(ValueError, match="in_channels"):
        checkerboard_score(nn.Sequential(nn.Upsample(scale_factor=2)))
    assert checkerboard_score(nn.Sequential(nn.Upsample(scale_factor=2)), in_channels=1) == 0.0
