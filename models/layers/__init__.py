"""Convolution building blocks, one concept per file. Importing this package registers every
block name that model specs can use (``models.registry.list_blocks()``)."""
from .arithmetic import (ReceptiveField, conv_output_size, conv_transpose_output_size,
                         effective_kernel_size, pool_output_size, receptive_field, same_padding)
from .contract import Block, check_block
from .conv import ConvNormAct, NormAct, make_act, make_norm
from .convpool import ConvPoolBlock
from .highway import HighwayBlock
from .inception import InceptionBlock
from .pooling import GlobalAvgPool2d, Pool2d
from .reference import conv2d_im2col, conv_matrix
from .residual import BasicBlock, Bottleneck, PlainBlock, PreActBlock, ShortcutA, make_shortcut
from .resnext import ResNeXtBlock
from .separable import DepthwiseSeparableConv, FlattenedConv, InvertedResidual, SpatiallySeparableConv
from .shuffle import ChannelShuffle, ChannelShuffleBlock, ShuffleUnit, ShuffleV2Unit, channel_shuffle, concat_shuffle
from .textcnn import TextCNN
from .upsample import ResizeConvUp, TransposedConvUp, checkerboard_score
from .whitening import PatchWhitening, fit_whitening

__all__ = [
    "ReceptiveField", "conv_output_size", "conv_transpose_output_size", "effective_kernel_size",
    "pool_output_size", "receptive_field", "same_padding",
    "Block", "check_block",
    "ConvNormAct", "ConvPoolBlock", "NormAct", "make_act", "make_norm", "PatchWhitening", "fit_whitening",
    "HighwayBlock", "InceptionBlock", "GlobalAvgPool2d", "Pool2d", "conv2d_im2col", "conv_matrix",
    "BasicBlock", "Bottleneck", "PlainBlock", "PreActBlock", "ShortcutA", "make_shortcut",
    "ResNeXtBlock", "DepthwiseSeparableConv", "FlattenedConv", "InvertedResidual",
    "SpatiallySeparableConv", "ChannelShuffle", "ChannelShuffleBlock", "ShuffleUnit", "ShuffleV2Unit",
    "channel_shuffle", "concat_shuffle",
    "TextCNN", "ResizeConvUp", "TransposedConvUp", "checkerboard_score",
]
