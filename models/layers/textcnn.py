"""TextCNN (Kim, "Convolutional Neural Networks for Sentence Classification", EMNLP 2014).

A sentence is a sequence of word vectors, an (L, E) "image" one pixel high. Filters of
several widths k slide along the words (Conv1d over the E embedding channels), so each
filter detects a k-gram feature; max-over-time pooling keeps each filter's strongest match
wherever it occurs, which also makes the feature vector independent of the sentence length.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from convzoo.checks import check_positive

from .conv import LayerSpec, make_act


class TextCNN(nn.Module):
    """``concat_k max_t act(Conv1d_k(x))[t]`` over kernel widths k, then optional dropout + linear.

    Input: token ids (N, L) when ``vocab_size`` is given (an ``nn.Embedding`` turns them into
    vectors), or embeddings (N, L, embed_dim). Output: features (N, num_filters *
    len(kernel_sizes)), or logits (N, num_classes) when ``num_classes`` is given. Kim's
    "CNN-rand" uses the defaults here: widths 3, 4, 5 with 100 filters each, dropout 0.5.
    Not a registered 2-D block (it works on sequences), but it has the usual
    ``in_channels`` (= embed_dim) and ``out_channels`` attributes.
    """

    def __init__(
        self,
        embed_dim: int,
        num_filters: int = 100,
        kernel_sizes: Sequence[int] = (3, 4, 5),
        *,
        num_classes: int | None = None,
        vocab_size: int | None = None,
        dropout: float = 0.5,
        act_layer: LayerSpec = "relu",
    ) -> None:
        super().__init__()
        check_positive("embed_dim", embed_dim)
        check_positive("num_filters", num_filters)
        if isinstance(kernel_sizes, int) or not kernel_sizes:
            raise ValueError(f"kernel_sizes should be a non-empty sequence of ints >= 1, got {kernel_sizes!r}")
        check_positive("kernel_sizes", tuple(kernel_sizes))
        if num_classes is not None:
            check_positive("num_classes", num_classes)
        if vocab_size is not None:
            check_positive("vocab_size", vocab_size)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout should be in [0, 1), got {dropout}")

        self.embed = nn.Embedding(vocab_size, embed_dim) if vocab_size is not None else None
        # One Conv1d per width; each sees all E embedding channels, like a k x E 2-D filter.
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, num_filters, k) for k in kernel_sizes)
        self.act = make_act(act_layer)
        self.num_features = num_filters * len(kernel_sizes)
        if num_classes is not None:
            self.dropout = nn.Dropout(dropout)
            self.classifier = nn.Linear(self.num_features, num_classes)
        else:
            self.dropout = self.classifier = None
        self.kernel_sizes = tuple(kernel_sizes)
        self.in_channels = self.embed_dim = embed_dim
        self.out_channels = num_classes if num_classes is not None else self.num_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, L) ids or (N, L, E) embeddings -> pooled features (N, num_filters * len(kernel_sizes))."""
        if x.dim() == 2 and self.embed is not None and not x.is_floating_point():
            x = self.embed(x)  # (N, L) -> (N, L, E)
        if x.dim() != 3 or x.shape[-1] != self.embed_dim:
            ids = " or (N, L) token ids" if self.embed is not None else ""
            raise ValueError(f"TextCNN expects (N, L, {self.embed_dim}) embeddings{ids}, got {tuple(x.shape)}")
        if x.shape[1] < max(self.kernel_sizes):
            raise ValueError(f"sequence length {x.shape[1]} is shorter than the widest kernel "
                             f"{max(self.kernel_sizes)}; pad the sequences to at least that length")
        x = x.transpose(1, 2)  # (N, E, L): embedding dims are the conv's channels
        # Each conv: (N, F, L - k + 1); the max over time keeps one value per filter: (N, F).
        pooled = [self.act(conv(x)).amax(dim=-1) for conv in self.convs]
        return torch.cat(pooled, dim=1)  # (N, F * len(kernel_sizes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.forward_features(x)
        if self.classifier is None:
            return features
        return self.classifier(self.dropout(features))  # (N, num_classes)
