"""Pretrained weights in: the registry, akamaster's CIFAR ResNets against a reference forward written
from the paper, every way of naming weights (tag, file, file:// URL, download into torch.hub's cache,
$CONVZOO_WEIGHTS_DIR, exported folder, hf-hub:), hash checks, a new classifier head, and torch.hub.

The reference forward reads akamaster's own state_dict (their names) and knows nothing of convzoo,
so our net and converter are checked against an independent reading of He et al. 2016, sec. 4.2.
Their files are used where the shared folder has them; weights in their format that the tests write
check the same thing everywhere, at every depth.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from convzoo.models import create_model
from convzoo.models import pretrained as registry
from convzoo.models.akamaster import convert
from convzoo.models.pretrained import get_pretrained, list_pretrained
from convzoo.models.serialization import build_from_config
from convzoo.models.weights_io import WEIGHTS_DIR_ENV, fetch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "weights" / "akamaster"
FILES = {"resnet20": "resnet20-12fca82f.th", "resnet32": "resnet32-d509ac18.th", "resnet44": "resnet44-014dd654.th"}


def reference_forward(state: dict, x: torch.Tensor, n: int) -> torch.Tensor:
    """He et al. 2016, sec. 4.2: a 3x3 conv (16 filters), then 3 stages of n pairs of 3x3 convs with
    16/32/64 filters on 32/16/8 maps, subsampling by stride 2 in each stage's first conv, batch norm
    after every conv and before its ReLU (sec. 3.4); identity shortcuts around each pair, which
    subsample by stride 2 and pad the new dimensions with zeros (option A), added before the pair's
    last ReLU; global average pooling and a 10-way linear layer. The paper does not say where the
    zeros go: half before the input's channels, half after, as these weights were trained."""
    def conv_bn(x, conv, norm, stride=1):
        x = F.conv2d(x, state[conv], stride=stride, padding=1)
        return F.batch_norm(x, state[f"{norm}.running_mean"], state[f"{norm}.running_var"],
                            state[f"{norm}.weight"], state[f"{norm}.bias"], training=False, eps=1e-5)

    x = F.relu(conv_bn(x, "conv1.weight", "bn1"))
    for stage, width in enumerate((16, 32, 64), start=1):
        for i in range(n):
            stride, p = (2 if stage > 1 and i == 0 else 1), f"layer{stage}.{i}."
            y = conv_bn(F.relu(conv_bn(x, p + "conv1.weight", p + "bn1", stride)), p + "conv2.weight", p + "bn2")
            skip = x[:, :, ::stride, ::stride]
            extra = width - skip.shape[1]
            x = F.relu(y + F.pad(skip, (0, 0, 0, 0, extra // 2, extra - extra // 2)))
    return F.linear(x.mean(dim=(2, 3)), state["linear.weight"], state["linear.bias"])


def akamaster_style(n: int, seed: int = 0) -> dict:
    """A file in akamaster's format (``module.``-prefixed keys, no num_batches_tracked) with random
    weights and batch norm statistics, for a 6n+2-layer net."""
    g = torch.Generator().manual_seed(seed)
    state = {}

    def layer(conv, norm, cout, cin):
        state[conv] = torch.randn(cout, cin, 3, 3, generator=g) * (2 / (9 * cin)) ** 0.5
        state[f"{norm}.weight"] = 1 + 0.1 * torch.randn(cout, generator=g)
        state[f"{norm}.bias"] = 0.1 * torch.randn(cout, generator=g)
        state[f"{norm}.running_mean"] = 0.1 * torch.randn(cout, generator=g)
        state[f"{norm}.running_var"] = 0.5 + torch.rand(cout, generator=g)

    layer("conv1.weight", "bn1", 16, 3)
    cin = 16
    for stage, width in enumerate((16, 32, 64), start=1):
        for i in range(n):
            p = f"layer{stage}.{i}."
            layer(p + "conv1.weight", p + "bn1", width, cin)
            layer(p + "conv2.weight", p + "bn2", width, width)
            cin = width
    state["linear.weight"] = 0.1 * torch.randn(10, 64, generator=g)
    state["linear.bias"] = 0.1 * torch.randn(10, generator=g)
    return {"best_prec1": 90.0, "state_dict": {"module." + k: v for k, v in state.items()}}


def their_state(ckpt: dict) -> dict:
    return {k.removeprefix("module."): v for k, v in ckpt["state_dict"].items()}


X = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def fake_resnet20(tmp_path, monkeypatch) -> tuple[Path, dict]:
    """resnet20's registry entry pointed at a file:// URL of weights in akamaster's format that the test
    wrote (hash and all), with torch.hub's cache in tmp_path and no weights folder set."""
    ckpt = akamaster_style(3)
    path = tmp_path / "upstream" / "resnet20-test.th"
    path.parent.mkdir()
    torch.save(ckpt, path)
    entry = dataclasses.replace(get_pretrained("resnet20"), url=path.as_uri(),
                                sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    monkeypatch.setitem(registry._WEIGHTS, entry.name, entry)
    monkeypatch.delenv(WEIGHTS_DIR_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return path, ckpt


# ---- the registry --------------------------------------------------------------------------------

def test_registry_lists_akamaster_resnets_with_hashes_that_match_their_file_names():
    names = list_pretrained("resnet*")
    assert names == sorted(f"resnet{d}.cifar10.akamaster" for d in (20, 32, 44, 56, 110, 1202))
    for name in names:
        entry = registry._WEIGHTS[name]
        assert entry.file_name.split("-")[1].startswith(entry.sha256[:8]) and entry.license.startswith("BSD-2")
        assert entry.full_hash == (entry.model in FILES) and entry.accuracy > 91
    with pytest.raises(ValueError, match="no pretrained weights are registered for mobilenet_v1"):
        get_pretrained("mobilenet_v1")
    with pytest.raises(ValueError, match="resnet20 has no pretrained weights tagged 'imagenet'; its tags: cifar10.akamaster"):
        get_pretrained("resnet20", "imagenet")


@pytest.mark.parametrize("n", [3, 9, 18])  # resnet20, resnet56, resnet110
def test_converted_weights_give_the_reference_logits_at_every_depth(n):
    ckpt = akamaster_style(n, seed=n)
    net = create_model(f"resnet{6 * n + 2}")
    net.load_state_dict(convert(ckpt), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(X), reference_forward(their_state(ckpt), X, n), rtol=0, atol=1e-5)


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared akamaster weights folder is not present")
@pytest.mark.parametrize("model", sorted(FILES))
def test_akamaster_files_load_with_the_logits_their_architecture_defines(model, monkeypatch):
    path = SHARED / FILES[model]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == get_pretrained(model).sha256  # the full hash
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(SHARED))
    net = create_model(model, pretrained=True).eval()
    assert net.pretrained_cfg["weights"] == f"{model}.cifar10.akamaster"
    reference = reference_forward(their_state(torch.load(path, map_location="cpu", weights_only=True)), X,
                                  (int(model[len("resnet"):]) - 2) // 6)
    with torch.no_grad():
        torch.testing.assert_close(net(X), reference, rtol=0, atol=1e-5)
        # the same file named by path or URL is recognised by its published name, checked and converted
        for given in (str(path), path.as_uri()):
            torch.testing.assert_close(create_model(model, pretrained=given).eval()(X), reference, rtol=0, atol=1e-5)


# ---- where weights come from ---------------------------------------------------------------------

def test_download_into_torch_hub_cache_then_cache_then_weights_dir(fake_resnet20, tmp_path, monkeypatch):
    path, ckpt = fake_resnet20
    expected = reference_forward(their_state(ckpt), X, 3)
    net = create_model("resnet20", pretrained=True).eval()  # "downloaded" from the file:// URL
    cached = tmp_path / "torch_home" / "hub" / "checkpoints" / "resnet20-test.th"
    assert cached.read_bytes() == path.read_bytes()
    with torch.no_grad():
        torch.testing.assert_close(net(X), expected, rtol=0, atol=1e-5)
    path.unlink()  # from now on only the cache has it
    with torch.no_grad():
        torch.testing.assert_close(create_model("resnet20", pretrained="cifar10.akamaster").eval()(X), expected,
                                   rtol=0, atol=1e-5)
    cached.write_bytes(cached.read_bytes()[:-10])  # a corrupt cache is refused, never loaded
    with pytest.raises(ValueError, match="has SHA-256 .* expected .*: the file is corrupt"):
        create_model("resnet20", pretrained=True)
    folder = tmp_path / "offline"
    folder.mkdir()
    torch.save(ckpt, folder / "resnet20-test.th")
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(folder))  # the weights folder comes before the cache
    assert create_model("resnet20", pretrained=True).pretrained_cfg["weights"] == "resnet20.cifar10.akamaster"


def test_unreachable_download_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path / "none"))
    with pytest.raises(FileNotFoundError, match=r"cannot download http://127\.0\.0\.1:9/w-1234abcd\.th .*put "
                                                r"w-1234abcd\.th into \$CONVZOO_WEIGHTS_DIR"):
        fetch("http://127.0.0.1:9/w-1234abcd.th", "1234abcd")
    assert not list((tmp_path / "hub" / "checkpoints").glob("*"))


def test_a_hash_known_by_its_prefix_is_checked_as_a_prefix(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    path = tmp_path / "w.th"
    path.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    assert fetch(path.as_uri(), digest[:8]).read_bytes() == b"weights"
    (tmp_path / "home" / "hub" / "checkpoints" / "w.th").unlink()
    with pytest.raises(ValueError, match="only its first 8 hex digits are known"):
        fetch(path.as_uri(), "00000000")
    assert not (tmp_path / "home" / "hub" / "checkpoints" / "w.th").exists()  # a bad download is not kept


def test_new_head_for_another_class_count_and_no_head(fake_resnet20):
    _, ckpt = fake_resnet20
    loaded = convert(ckpt)
    with pytest.warns(UserWarning, match="classifier for 10 classes but resnet20 was built for 100: the classifier "
                                         r"\(fc\) is initialised afresh"):
        net = create_model("resnet20", pretrained=True, num_classes=100)
    assert net.fc.weight.shape == (100, 64)
    assert all(torch.equal(v, loaded[k]) for k, v in net.state_dict().items() if not k.startswith("fc."))
    features = create_model("resnet20", pretrained=True, num_classes=0)
    assert torch.equal(features.stem[0][0].weight, loaded["stem.0.0.weight"])
    with pytest.raises(ValueError, match=r"do not fit model resnet20: .*shapes differ"):
        create_model("resnet20", pretrained=True, width_mult=2.0)


def test_plain_files_hub_folders_and_bad_names(tmp_path, monkeypatch):
    net = create_model("resnet20").eval()
    torch.save(net.state_dict(), tmp_path / "mine.pt")
    with torch.no_grad():
        assert torch.equal(create_model("resnet20", pretrained=str(tmp_path / "mine.pt")).eval()(X), net(X))
    with pytest.raises(FileNotFoundError, match=r"pretrained='nope' is not a tag of resnet20's weights "
                                                r"\(cifar10\.akamaster\), nor a file or folder that exists"):
        create_model("resnet20", pretrained="nope")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if not installed
    with pytest.raises(ImportError, match=r"hf-hub:owner/name needs the huggingface_hub package"):
        create_model(pretrained="hf-hub:owner/name")
    with pytest.raises(ValueError, match="create_model without a model name needs pretrained="):
        create_model()


def test_meta_device_builds_and_checkpoint_rebuilds_do_not_fetch():
    with torch.device("meta"):  # what the config checks do: shapes only
        assert create_model("resnet20", pretrained="no/such/file").stem[0][0].weight.is_meta
    cfg = {"_target_": "convzoo.models.Net", "name": "tiny", "pretrained": "no/such/file",
           "stages": [{"block": "basic", "out_channels": 8}], "stem": [{"block": "conv", "out_channels": 8}]}
    assert build_from_config(cfg).name == "tiny"  # a checkpoint's own weights replace them


def test_torch_hub_load_local(fake_resnet20):
    path, ckpt = fake_resnet20
    net = torch.hub.load(str(ROOT), "resnet20", source="local", pretrained=True, trust_repo=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(net(X), reference_forward(their_state(ckpt), X, 3), rtol=0, atol=1e-5)


def test_torch_hub_runs_a_checkout_that_was_never_installed(tmp_path):
    """torch.hub's GitHub path runs the downloaded repository without installing it: hubconf maps
    the folders under the package name itself (the installed package is hidden here)."""
    code = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'convzoo' not in repr(f)]; "
            f"sys.path[:] = [p for p in sys.path if p not in ('', {str(ROOT)!r})]; import torch; "
            f"net = torch.hub.load({str(ROOT)!r}, 'resnet20', source='local', trust_repo=True, num_classes=3); "
            "import convzoo; print(convzoo.__path__[-1], net.fc.out_features)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [str(ROOT), "3"]  # the package as hubconf mapped it


def test_train_fine_tunes_with_a_new_head_and_its_checkpoint_needs_no_download(fake_resnet20, compose_train, tiny,
                                                                               tmp_path):
    from train import train

    from convzoo.models.serialization import net_from_checkpoint

    path, _ = fake_resnet20
    cfg = compose_train(*tiny, "data.num_classes=4", "model.pretrained=true", "trainer.max_epochs=1", "test=false",
                        "+trainer.limit_train_batches=1", "+trainer.limit_val_batches=1", tmp_path=tmp_path / "run")
    with pytest.warns(UserWarning, match="classifier for 10 classes but resnet20 was built for 4"):
        train(cfg)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    path.unlink()
    for cached in (tmp_path / "torch_home").rglob("*.th"):
        cached.unlink()
    assert net_from_checkpoint(ckpt).fc.out_features == 4  # rebuilt from its own weights, nothing fetched
