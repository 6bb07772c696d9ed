"""The house keeps its layout: every package's face imports and names what exists, no module reaches
into another package's private modules, and imports only go down the layers."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import tomllib
from pathlib import Path

import pytest

from tests.support import ROOT
from worldrt.providers.sandbox._bwrap import AGENT_FILES

pytestmark = pytest.mark.pure

# Lowest first: a package may import its own layer and the ones before it, never one after it.
LAYERS = [
    ("worldrt", "worldrt.v1", "worldrt.wit", "worldrt.examples"),
    ("worldrt.telemetry",),
    ("worldrt.providers",),
    ("worldrt.providers.sandbox",),
    ("worldrt.providers.morph", "worldrt.providers.modal", "worldrt.providers.primeintellect",
     "worldrt.providers.gensyn", "worldrt.providers.ritual"),
    ("worldrt.host.registry",),
    ("worldrt.host.runtime",),
    ("worldrt.host.routing",),
    ("worldrt.host.lattice",),
    ("worldrt.host.verse",),
    ("worldrt.host",),
    ("worldrt.host.api",),
    ("worldrt.host.api.modal", "worldrt.host.api.e2b"),
    # The Python client sits above the host (it calls the Host API); the CLI is built on the client.
    ("worldrt.client",),
    ("worldrt.testing",),
    ("worldrt.host.cli",),
]
RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}
# The sandbox agent and the modules beside it (_bwrap.AGENT_FILES) run inside sandboxes as scripts, not as part of the package.
SCRIPTS = {f"worldrt.providers.sandbox.{name.removesuffix('.py')}" for name in AGENT_FILES}
# The one exception to "only downward": the top-level package names the client's two classes for users
# (worldrt.Client, worldrt.AsyncClient), imported on first use or for type checkers only, never on import.
LAZY_UPWARD = {"worldrt": {"worldrt.client", "worldrt.client.Client", "worldrt.client.AsyncClient"}}


def _packages() -> list[str]:
    """The packages the wheel ships (pyproject.toml's list: an editable install cannot be walked)."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        return list(tomllib.load(f)["tool"]["setuptools"]["packages"])


def _modules() -> dict[str, tuple[Path, bool]]:
    """Every module of the worldrt distribution: name → (file, is a package)."""
    found: dict[str, tuple[Path, bool]] = {}
    for package in _packages():
        face = importlib.import_module(package)
        assert face.__file__ is not None, package
        found[package] = (Path(face.__file__), True)
        for info in pkgutil.iter_modules(face.__path__, f"{package}."):
            if not info.ispkg and "_pb2" not in info.name and not info.name.endswith("__main__"):
                found[info.name] = (Path(face.__path__[0]) / f"{info.name.rpartition('.')[2]}.py", False)
    return found


MODULES = _modules()
PACKAGES = sorted(name for name, (_, is_package) in MODULES.items() if is_package)


def _package_of(module: str) -> str:
    return module if MODULES[module][1] else module.rpartition(".")[0]


def _layer_of(module: str) -> str:
    while module not in RANK:
        module = module.rpartition(".")[0]
    return module


def _names(node: ast.AST) -> list[str]:
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [f"{node.module}.{alias.name}" for alias in node.names]
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    return []


def _imports(module: str) -> list[str]:
    path = MODULES[module][0]
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names += _names(node)
    return [n for n in names if n == "worldrt" or n.startswith("worldrt.")]


def _imported_on_load(module: str) -> list[str]:
    """The worldrt names ``module`` imports when it is loaded: at its top level, outside functions and
    ``if TYPE_CHECKING:`` blocks."""
    path = MODULES[module][0]
    names: list[str] = []
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            continue
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names += [n for child in ast.walk(node) for n in _names(child)]
    return [n for n in names if n == "worldrt" or n.startswith("worldrt.")]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_face_imports_and_names_only_what_it_has(package: str) -> None:
    face = importlib.import_module(package)
    exported = getattr(face, "__all__", None)
    assert exported, f"{package} has no __all__: say what its face offers"
    missing = [name for name in exported if not hasattr(face, name)]
    assert not missing, f"{package}.__all__ names what it does not have: {missing}"
    assert len(set(exported)) == len(exported), f"{package}.__all__ names something twice"


def test_no_module_imports_another_package_s_private_module() -> None:
    crossings = []
    for module in MODULES:
        if module in SCRIPTS:
            continue
        own = _package_of(module)
        for name in _imports(module):
            parts = name.split(".")
            for i, part in enumerate(parts):
                if part.startswith("_") and not part.startswith("__"):
                    if ".".join(parts[:i]) != own:
                        crossings.append(f"{module} imports {name}")
                    break
    assert not crossings, "\n".join(crossings)


def test_imports_only_go_down_the_layers() -> None:
    upward = []
    for module in MODULES:
        if module in SCRIPTS or module.startswith("worldrt.examples"):
            continue
        mine = _layer_of(module)
        for name in _imports(module):
            target = name
            while target not in MODULES and "." in target:
                target = target.rpartition(".")[0]
            theirs = _layer_of(target)
            if RANK[theirs] > RANK[mine] and name not in LAZY_UPWARD.get(module, ()):
                upward.append(f"{module} ({mine}) imports {name} ({theirs})")
    assert not upward, "\n".join(upward)


def test_the_top_level_names_the_client_lazily_and_only_the_client() -> None:
    import worldrt

    assert not set(_imported_on_load("worldrt")) & LAZY_UPWARD["worldrt"], "import worldrt must not load the client"
    upward = {n for n in _imports("worldrt") if RANK[_layer_of(n if n in MODULES else n.rpartition(".")[0])] > 0}
    assert upward == LAZY_UPWARD["worldrt"]
    assert worldrt.Client.__module__.startswith("worldrt.client") and {"Client", "AsyncClient"} <= set(dir(worldrt))


def test_the_wheel_ships_every_package_and_the_layers_name_them() -> None:
    roots = {"worldrt.providers": ROOT / "providers", "worldrt.host": ROOT / "host", "worldrt.client": ROOT / "client",
             "worldrt.testing": ROOT / "testing"}
    on_disk = {f"{name}.{'.'.join(init.parent.relative_to(root).parts)}".rstrip(".")
               for name, root in roots.items() for init in root.rglob("__init__.py") if "__pycache__" not in init.parts}
    assert on_disk <= set(PACKAGES), f"packages missing from pyproject.toml: {sorted(on_disk - set(PACKAGES))}"
    assert [p for p in PACKAGES if p not in RANK] == []
