"""Convolution building blocks; one concept per file."""
from .arithmetic import *  # noqa
from .conv import ConvNormAct, make_act, make_norm  # noqa
