"""ReLU6 in place (models/layers/activation.py): the values and gradients of F.relu6, no input copy."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import profile

from convzoo.models.layers.activation import ReLU6
from convzoo.models.layers.conv import make_act


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_same_values_and_gradients_as_relu6(layout):
    x = torch.randn(2, 6, 5, 5) * 5
    x[0, 0, 0, :3] = torch.tensor([0.0, 6.0, -0.0])  # the edges: gradient 0 there, as F.relu6
    x = x.contiguous(memory_format=layout)
    g = torch.randn_like(x)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    y = ReLU6(inplace=True)(a * 1.0)  # in place on a non-leaf, as after a norm layer
    y.backward(g)
    F.relu6(b).backward(g)
    torch.testing.assert_close(y, F.relu6(x), rtol=0, atol=0)
    torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)
    assert y.is_contiguous(memory_format=layout)


def _copies(act) -> int:
    x = torch.randn(4, 8, 6, 6, requires_grad=True)
    with profile() as prof:
        act(x * 1.0).sum().backward()
    return sum(e.name in ("aten::clone", "aten::copy_") for e in prof.events())


def test_no_input_copy_and_the_other_paths():
    # as few copies as in-place ReLU (which saves its output too), fewer than nn.ReLU6's in-place form
    assert _copies(ReLU6(inplace=True)) == _copies(torch.nn.ReLU(inplace=True)) < _copies(torch.nn.ReLU6(inplace=True))
    assert isinstance(make_act("relu6"), ReLU6) and isinstance(make_act("relu6"), torch.nn.ReLU6)
    with torch.no_grad():  # no autograd: nn.ReLU6's own in-place path
        z = torch.randn(3, 3) * 8
        torch.testing.assert_close(ReLU6(inplace=True)(z.clone()), F.relu6(z))
    torch.testing.assert_close(ReLU6()(z), F.relu6(z))
