"""TextCNN (Kim 2014): shapes, the max-over-time computation, inputs and errors."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from convzoo.models.layers.textcnn import TextCNN


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(5, 12), st.lists(st.integers(1, 5), min_size=1, max_size=3),
       st.integers(1, 6))
def test_feature_width_is_independent_of_sequence_length(batch, length, kernel_sizes, num_filters):
    model = TextCNN(4, num_filters, kernel_sizes, dropout=0.0)
    out = model(torch.randn(batch, length, 4))
    assert out.shape == (batch, num_filters * len(kernel_sizes)) == (batch, model.out_channels)


def test_token_ids_and_classifier():
    model = TextCNN(6, 5, (2, 3), num_classes=4, vocab_size=30).eval()
    ids = torch.randint(0, 30, (3, 9))
    logits = model(ids)
    assert logits.shape == (3, 4)
    assert (model.in_channels, model.out_channels, model.num_features) == (6, 4, 10)
    # Pre-computed embeddings give the same answer as ids through the model's own table.
    torch.testing.assert_close(model(model.embed(ids)), logits)


def test_features_are_max_over_time_of_relu_conv():
    torch.manual_seed(0)
    model = TextCNN(3, 2, (1, 3), dropout=0.0)
    x = torch.randn(2, 7, 3)
    expected = torch.cat([F.relu(F.conv1d(x.transpose(1, 2), conv.weight, conv.bias)).max(dim=-1).values
                          for conv in model.convs], dim=1)
    torch.testing.assert_close(model(x), expected)


def test_max_over_time_finds_a_feature_anywhere():
    # A width-1 filter that reads one embedding dimension: its pooled value is the largest entry
    # of that dimension, wherever in the sentence it sits.
    model = TextCNN(2, 1, (1,), dropout=0.0)
    with torch.no_grad():
        model.convs[0].weight.copy_(torch.tensor([[[1.0], [0.0]]]))
        model.convs[0].bias.zero_()
    for position in (0, 4, 9):
        x = torch.zeros(1, 10, 2)
        x[0, position, 0] = 3.0
        assert model(x).item() == 3.0


def test_every_parameter_gets_a_gradient():
    model = TextCNN(4, 3, (2, 3), num_classes=2, vocab_size=11)
    model(torch.randint(0, 11, (2, 6))).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_short_sequence_raises_clearly():
    model = TextCNN(4, 2, (3, 5))
    assert model(torch.randn(1, 5, 4)).shape == (1, 4)  # exactly the widest kernel is fine
    with pytest.raises(ValueError, match="shorter than the widest kernel 5"):
        model(torch.randn(1, 4, 4))


def test_wrong_input_shapes_raise():
    with pytest.raises(ValueError, match=r"\(N, L, 4\)"):
        TextCNN(4)(torch.randn(2, 8, 5))
    with pytest.raises(ValueError, match="embeddings"):
        TextCNN(4)(torch.randint(0, 5, (2, 8)))  # ids without a vocabulary


@pytest.mark.parametrize("kwargs, match", [
    (dict(embed_dim=0), "embed_dim"), (dict(num_filters=0), "num_filters"),
    (dict(kernel_sizes=()), "kernel_sizes"), (dict(kernel_sizes=3), "kernel_sizes"),
    (dict(kernel_sizes=(3, 0)), "kernel_sizes"), (dict(num_classes=0), "num_classes"),
    (dict(vocab_size=0), "vocab_size"), (dict(dropout=1.0), "dropout"), (dict(act_layer="nope"), "act_layer"),
])
def test_rejects_bad_arguments(kwargs, match):
    args = dict(embed_dim=4) | kwargs
    with pytest.raises(ValueError, match=match):
        TextCNN(**args)
