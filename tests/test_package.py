"""The package as users get it: one import name, no import cycles, models without Lightning, and a
wheel that installs `convzoo` and nothing else at the top level."""
from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import convzoo

ROOT = Path(__file__).resolve().parents[1]
# Source folder of each subpackage, as pyproject.toml maps them.
PACKAGES = {"convzoo": ROOT / "convzoo", "convzoo.models": ROOT / "models", "convzoo.data": ROOT / "data",
            "convzoo.training": ROOT / "training", "convzoo.studies": ROOT / "studies",
            "convzoo.configs": ROOT / "configs"}


def _modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join((package, *parts))
            if name.startswith("convzoo.convzoo"):  # nested mapping guard
                continue
            found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's own modules ``name`` imports at module level (not inside functions: those run
    later and cannot form an import-time cycle)."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module] + [f"{module}.{a.name}" for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in modules and t != name}
    return out


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    # A package's __init__ importing its own submodules is how packages are built, not a cycle.
    graph = {n: {t for t in deps if not (t.startswith(n + ".") and modules[n].name == "__init__.py")}
             for n, deps in graph.items()}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_public_names():
    assert convzoo.__version__ and convzoo.__version__ != "0+unknown"
    assert "resnet20" in convzoo.list_models() and "basic" in convzoo.list_blocks()
    assert convzoo.create_model("resnet20", num_classes=7).fc.out_features == 7
    from convzoo.models.layers import InceptionBlock  # noqa: F401  (the documented import path)


def test_models_and_the_top_level_do_not_import_lightning():
    code = "import sys, convzoo, convzoo.models; convzoo.create_model('resnet20'); print('lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT.parent)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


def test_pyproject_lists_every_package_folder():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {name for name, path in _modules().items() if path.name == "__init__.py"}
    assert on_disk <= listed, f"add to pyproject.toml's packages: {sorted(on_disk - listed)}"
    assert config["package-dir"] == {k: str(v.relative_to(ROOT)) for k, v in PACKAGES.items()}


def test_wheel_installs_only_convzoo(tmp_path):
    """A non-editable build: everything lands under convzoo/ (a user's own models/ or data/ cannot
    collide with ours), with the model configs as package data."""
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    [wheel] = tmp_path.glob("convzoo-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"convzoo", wheel.name.split("-py3")[0] + ".dist-info"}
    models = {n for n in names if n.startswith("convzoo/configs/model/") and n.endswith(".yaml")}
    assert {Path(n).stem for n in models} >= set(convzoo.list_models())
    assert "convzoo/models/layers/conv.py" in names and "convzoo/studies/highway.py" in names


def test_nothing_imports_the_folders_by_their_bare_names():
    """The folders are importable under their own names from the repository root (pytest puts it
    on the path for train.py and benchmarks/), but a bare ``import data`` would load a second copy of
    convzoo.data, and a patch of one would silently miss the other."""
    bare = {"models", "data", "training", "configs", "studies"}
    found = []
    for path in sorted(p for p in ROOT.rglob("*.py") if not {".venv", "build"} & set(p.relative_to(ROOT).parts)):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            found += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n.split(".")[0] in bare]
    assert not found, "import through convzoo.<name> instead: " + ", ".join(found)
