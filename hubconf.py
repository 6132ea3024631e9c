"""torch.hub entry points: every convzoo model by name.

    net = torch.hub.load("<owner>/convzoo", "resnet20", pretrained=True)        # from GitHub
    net = torch.hub.load("path/to/convzoo", "resnet20", source="local", pretrained=True)
    net = torch.hub.load(..., "resnet20", num_classes=100)                       # any create_model override

``pretrained`` takes what ``create_model`` takes (True, a tag, a file, a folder, hf-hub:...); the
weights come through torch.hub's own cache, their SHA-256 checked.
"""
import importlib.util
import sys
from pathlib import Path

dependencies = ["torch", "torchvision", "hydra", "omegaconf"]

_HERE = Path(__file__).resolve().parent


def _convzoo():
    """The convzoo package: installed, or else this checkout's folders mapped under the name as
    pyproject.toml maps them (torch.hub runs a downloaded repository without installing it)."""
    try:
        import convzoo.models
        return convzoo
    except ImportError:
        for name in [n for n in sys.modules if n == "convzoo" or n.startswith("convzoo.")]:
            del sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        "convzoo", _HERE / "convzoo" / "__init__.py",
        submodule_search_locations=[str(_HERE / "convzoo"), str(_HERE)])  # convzoo.models -> models/, ...
    module = importlib.util.module_from_spec(spec)
    sys.modules["convzoo"] = module
    spec.loader.exec_module(module)
    return module


def _entry(name: str):
    def entry(pretrained=False, **overrides):
        return _convzoo().create_model(name, pretrained=pretrained or None, **overrides)

    entry.__name__ = name
    entry.__doc__ = f"convzoo's {name} (configs/model/{name}.yaml); pretrained: see create_model."
    return entry


for _name in _convzoo().list_models():
    globals()[_name] = _entry(_name)
