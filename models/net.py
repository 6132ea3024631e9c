"""The one generic network: stem -> stages of blocks -> final layers -> head, built from a spec.

An architecture is data (a YAML file in ``configs/model/``)::

    stem:   [{block: conv, out_channels: 16, kernel_size: 3}]
    stages:                                 # one entry per stage; a stage is a list of blocks
      - {block: basic, out_channels: 16, num_blocks: 3, stride: 1, shortcut: A}
      - blocks:                             # or spell the blocks out one by one
          - {block: inception, ch1x1: 64, ch3x3_reduce: 96, ch3x3: 128, ...}
          - {block: pool, mode: max, kernel_size: 3, stride: 2}
    final:  [{block: norm_act}]             # optional layers after the last stage
    head:   {dropout: 0.0, pool: avg}       # global avg (or max) pool -> dropout -> linear (x logit_scale)
    pretrained: true                        # optional: start from trained weights (models/pretrained.py)

Every block is built as ``Block(in_channels, out_channels, stride=s, **args)``; keys other than
``block``, ``out_channels``, ``in_channels``, ``stride``, ``num_blocks`` and ``scale`` are the
block's own arguments. ``in_channels`` is optional: the net knows it, and checks it when given.
What a block must take and provide is the contract in ``layers/contract.py``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from convzoo.checks import check_input

from .layers.contract import Block, channel_args, own_init, reduction
from .registry import get_block

_SPEC_KEYS = ("block", "out_channels", "in_channels", "stride", "num_blocks", "scale")


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never more than 10% down
    (the rounding rule of the MobileNet v2 paper's width multipliers)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def expand_stage(stage: dict) -> list[dict]:
    """A stage entry -> its list of block entries. ``num_blocks`` copies of the stage's block,
    the first one carrying the stage's stride; or the explicit ``blocks`` list."""
    stage = dict(stage)
    if "blocks" in stage:
        extra = sorted(set(stage) - {"blocks", "name"})
        if extra:
            raise ValueError(f"a stage with an explicit 'blocks' list takes no other keys, got {extra}")
        return [entry for b in stage["blocks"] for entry in expand_stage(b)]
    num_blocks = stage.pop("num_blocks", 1)
    stage.pop("name", None)
    if not isinstance(num_blocks, int) or num_blocks < 1:
        raise ValueError(f"num_blocks should be an integer >= 1, got {num_blocks!r}")
    stride = stage.pop("stride", 1)
    return [{**stage, "stride": stride if i == 0 else 1} for i in range(num_blocks)]


class Net(nn.Module):
    """A CIFAR-style classifier assembled from named blocks (see the module docstring)."""

    def __init__(
        self,
        stages: Sequence[dict],
        stem: Sequence[dict] = (),
        final: Sequence[dict] = (),
        head: dict | None = None,
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        width_mult: float = 1.0,
        round_to: int = 8,
        name: str = "net",
        source: str = "",
        paper_params: float | None = None,
        family: dict | None = None,
        pretrained: bool | str | None = None,
    ) -> None:
        super().__init__()
        for key, value, low in (("num_classes", num_classes, 0), ("in_chans", in_chans, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                hint = " (0: no classifier)" if low == 0 else ""
                raise ValueError(f"{key} should be an integer >= {low}{hint}, got {value!r}")
        if not width_mult > 0:
            raise ValueError(f"width_mult should be > 0, got {width_mult!r}")
        head = dict(head or {})
        self.name, self.num_classes, self.in_chans = name, num_classes, in_chans
        # Where the architecture comes from, and the size its paper reports (millions).
        self.source, self.paper_params = source, paper_params
        # A family's free parameters (e.g. blocks per stage), which its base config interpolates
        # into the stages so that a variant states only them; kept for the record.
        self.family = dict(family or {})
        self.width_mult, self.round_to = width_mult, round_to
        self.drop_rate = float(head.pop("dropout", 0.0))
        if not 0.0 <= self.drop_rate < 1.0:
            raise ValueError(f"head dropout should be in [0, 1), got {self.drop_rate}")
        self.pool_type = head.pop("pool", "avg")
        if self.pool_type not in ("avg", "max"):
            raise ValueError(f"head pool should be 'avg' or 'max', got {self.pool_type!r}")
        # a constant factor on the logits: Page (2018)'s DAWNBench ResNet-9 multiplies them by
        # 0.125, which keeps max-pooled features from making the early logits overconfident
        self.logit_scale = float(head.pop("logit_scale", 1.0))
        if not self.logit_scale > 0:
            raise ValueError(f"head logit_scale should be > 0, got {self.logit_scale}")
        if head:
            raise ValueError(f"unknown head keys {sorted(head)}; the head takes: dropout, pool, logit_scale")
        if not stages:
            raise ValueError("a model spec needs at least one stage")

        channels = in_chans
        self.stem, channels = self._build_seq(stem, channels, "stem")
        self.stages = nn.ModuleList()
        self.feature_info: list[dict] = []
        reduction = self._stride_of(self.stem)
        for i, stage in enumerate(stages):
            seq, channels = self._build_seq(expand_stage(stage), channels, f"stage {i}")
            self.stages.append(seq)
            reduction *= self._stride_of(seq)
            self.feature_info.append({"num_chs": channels, "reduction": reduction, "module": f"stages.{i}"})
        self.final, channels = self._build_seq(final, channels, "final")
        self.num_features = channels
        # global average pooling, or global max pooling as in airbench (Jordan 2024)
        self.global_pool = nn.AdaptiveAvgPool2d(1) if self.pool_type == "avg" else nn.AdaptiveMaxPool2d(1)
        self.head_drop = nn.Dropout(self.drop_rate)
        self.fc = nn.Linear(channels, num_classes) if num_classes > 0 else nn.Identity()
        self.init_weights()
        # Trained weights replace the fresh ones (models/pretrained.py: true, a tag, a file, a folder,
        # hf-hub:...). A net built on the meta device is built for its shapes only: nothing to load.
        self.pretrained_cfg: dict = {}
        if pretrained and not any(p.is_meta for p in self.parameters()):
            from .pretrained import load_pretrained

            load_pretrained(self, pretrained)

    def _scaled(self, channels: int | None, scale: bool) -> int | None:
        if channels is None or not scale or self.width_mult == 1.0:
            return channels
        return make_divisible(channels * self.width_mult, self.round_to)

    def _build_seq(self, entries: Sequence[dict], channels: int, where: str) -> tuple[nn.Sequential, int]:
        blocks = []
        for j, entry in enumerate(entries):
            entry = dict(entry)
            name = entry.get("block", "conv")
            at = f"{where}, block {j} ({name})"
            try:
                cls = get_block(name)
            except ValueError as err:
                raise ValueError(f"{at}: {err}") from None
            given_in = entry.get("in_channels")
            if given_in is not None and given_in != channels:
                raise ValueError(f"{at}: {cls.__name__} got in_channels={given_in} but the previous "
                                 f"block gives {channels}")
            scale = entry.get("scale", True)
            args = {k: v for k, v in entry.items() if k not in _SPEC_KEYS}
            for arg in channel_args(cls):
                if arg in args:
                    args[arg] = self._scaled(args[arg], scale)
            try:
                block = cls(channels, self._scaled(entry.get("out_channels"), scale),
                            stride=entry.get("stride", 1), **args)
            except (ValueError, TypeError) as err:
                raise ValueError(f"{at}: {err}") from None
            if not isinstance(block, Block):
                missing = [a for a in ("in_channels", "out_channels", "stride") if not hasattr(block, a)]
                raise TypeError(f"{at}: {cls.__name__} breaks the block contract (models/layers/contract.py): "
                                f"it lacks {', '.join(missing)}")
            channels = block.out_channels
            blocks.append(block)
        return nn.Sequential(*blocks), channels

    @staticmethod
    def _stride_of(seq: nn.Sequential) -> float:
        """Downsampling factor of a sequence; upsampling blocks (``scale_factor``) divide it."""
        stride = 1
        for block in seq:
            stride *= reduction(block)
        return stride

    def init_weights(self) -> None:
        """Kaiming (fan_out) convs, norms at 1/0; then each block's own ``init_weights`` (gate
        biases, zero-init residuals), which must win over the generic rule."""
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            init = own_init(m) if m is not self else None
            if init is not None:
                init()

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a fresh one for ``num_classes`` (0: no classifier)."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def _check(self, x: torch.Tensor) -> None:
        check_input(x, self.in_chans, f"{self.name}")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        x = self.stem(x)  # (N, C0, H, W)
        for stage in self.stages:
            x = stage(x)  # (N, C_i, H / r_i, W / r_i)
        return self.final(x)  # (N, num_features, h, w)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each stage's output, for use as a backbone (see ``feature_info`` for channels and
        reductions)."""
        self._check(x)
        x, out = self.stem(x), []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x).flatten(1)  # (N, num_features)
        x = self.head_drop(x)
        if pre_logits:
            return x
        x = self.fc(x)  # (N, num_classes)
        return x * self.logit_scale if self.logit_scale != 1.0 else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
