"""akamaster's pretrained CIFAR-10 ResNets (Yerlan Idelbayev, github.com/akamaster/pytorch_resnet_cifar10,
BSD-2-Clause): the most used weights for He et al.'s CIFAR ResNets, and the converter of their files.

Their files are ``torch.save`` dicts (``best_prec1``, ``state_dict``) saved from CUDA tensors under
``nn.DataParallel``, so every key starts with ``module.``; they predate batch norm's
``num_batches_tracked``. Their net is ours with other names (conv1/bn1 -> the stem, layerL.i ->
stages.L-1.i, bnK -> convK's norm, linear -> fc) and option-A shortcuts that pad ``planes // 4``
zero channels on each side: our ResNet configs' ``shortcut_pad: both``. Inputs are normalised with
ImageNet's mean and std, as in their training script.

There is no ResNet-1202 config (a 19.4M-parameter net would slow every test that builds all
models); its weights load into ``create_model("resnet20", name="resnet1202",
family={"blocks_per_stage": 200}, pretrained=True)``.
"""
from __future__ import annotations

import re

import torch

from .pretrained import PretrainedWeights, State, register_pretrained

URL = "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/"
LICENSE = "BSD-2-Clause (Yerlan Idelbayev, 2018)"
SOURCE = "akamaster/pytorch_resnet_cifar10"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

_BLOCK = re.compile(r"layer(?P<stage>[1-3])\.(?P<block>\d+)\.(?P<kind>conv|bn)(?P<k>[12])\.(?P<rest>.+)")


def _our_key(key: str) -> str:
    if key.startswith("conv1."):
        return "stem.0.0." + key[len("conv1."):]
    if key.startswith("bn1."):
        return "stem.0.1." + key[len("bn1."):]
    if key.startswith("linear."):
        return "fc." + key[len("linear."):]
    found = _BLOCK.fullmatch(key)
    if found is None:
        raise ValueError(f"{key!r} is not a weight of akamaster's CIFAR ResNet (conv1, bn1, layer1-3, linear)")
    layer = "0" if found["kind"] == "conv" else "1"  # ConvNormAct: 0 is the conv, 1 its norm
    return f"stages.{int(found['stage']) - 1}.{found['block']}.conv{found['k']}.{layer}.{found['rest']}"


def convert(ckpt) -> State:
    """akamaster's file (or its state_dict) -> the state_dict of our ResNet of the same depth."""
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError("not an akamaster checkpoint: no state_dict of tensors in it")
    ours = {}
    for key, value in state.items():
        new = _our_key(key.removeprefix("module."))
        ours[new] = value.float()
        if new.endswith(".running_var"):  # their files predate the counter; 0 is what a fresh BN holds
            ours[new[: -len("running_var")] + "num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return ours


# (model, file, SHA-256, top-1 % on the CIFAR-10 test set as published in their README). The full
# hashes were computed from the files; for the three files not at hand only the 8 hex digits of
# their names are known (torch.hub's check_hash prefix), and they are checked as a prefix.
_FILES = (
    ("resnet20", "resnet20-12fca82f.th", "12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8", 91.73),
    ("resnet32", "resnet32-d509ac18.th", "d509ac1820d7f25398913559d7e81a13229b1e7adc5648e3bfa5e22dc137f850", 92.63),
    ("resnet44", "resnet44-014dd654.th", "014dd6541728a1c700b1642ab640e211dc6eb8ed507d70697458dc8f8a0ae2e4", 93.10),
    ("resnet56", "resnet56-4bfd9763.th", "4bfd9763", 93.39),
    ("resnet110", "resnet110-1d1ed7c2.th", "1d1ed7c2", 93.68),
    ("resnet1202", "resnet1202-f3b1deed.th", "f3b1deed", 93.82),
)

for _model, _file, _sha, _acc in _FILES:
    register_pretrained(PretrainedWeights(
        model=_model, tag="cifar10.akamaster", url=URL + _file, sha256=_sha, license=LICENSE, source=SOURCE,
        dataset="cifar10", accuracy=_acc, convert=convert, mean=IMAGENET_MEAN, std=IMAGENET_STD))
