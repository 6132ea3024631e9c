"""convzoo.models: building blocks (``convzoo.models.layers``), the generic ``Net`` built from a spec,
the block and model registries, the autoencoder, complexity reports, checkpoint loading
(``serialization``) and pretrained weights (``pretrained``, ``list_pretrained()``). Pure PyTorch: no Lightning import."""
from . import layers
from .layers import *  # noqa: F401,F403  (the public blocks, re-exported)
from .layers import __all__ as _layer_names
from .autoencoder import ConvAutoencoder
from .complexity import complexity
from .fuse import fuse_conv_bn
from .net import Net, make_divisible
from .pretrained import get_pretrained, list_pretrained
from . import akamaster  # noqa: E402,F401  registers akamaster's weights (it imports pretrained, not the reverse)
from .registry import create_model, get_block, list_blocks, list_models, model_config

__all__ = [*_layer_names, "Net", "make_divisible", "create_model", "get_block", "list_blocks",
           "list_models", "model_config", "complexity", "ConvAutoencoder", "fuse_conv_bn",
           "get_pretrained", "list_pretrained"]

