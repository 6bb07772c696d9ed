"""The node_modules a JavaScript component's build uses, installed once by ``npm ci`` for each set of pins and
shared by every later build with the same pins (an install is ~380 MB and takes longer than the build).

A tree is keyed by what ``npm ci`` installs from: the lock file's packages and the dependency fields of
package.json (a package's own name, version and scripts do not count), and node's and npm's versions. It is
installed in a scratch folder inside the cache and renamed into place whole, so a build never sees half of
one. The most recently used ``KEEP`` trees are kept."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from worldrt.host.runtime._errors import ComponentError

KEEP = 3
_DEPENDENCY_FIELDS = ("dependencies", "devDependencies", "optionalDependencies", "peerDependencies",
                      "bundleDependencies", "overrides")
# The package's own scripts that ``npm ci`` runs.
_INSTALL_SCRIPTS = {"preinstall", "install", "postinstall", "prepublish", "preprepare", "prepare", "postprepare",
                    "dependencies"}


def default_cache() -> Path:
    """$WORLDRT_CACHE/node_modules, else the user's cache folder ($XDG_CACHE_HOME or ~/.cache)."""
    shared = os.environ.get("WORLDRT_CACHE")
    if shared:
        return Path(shared) / "node_modules"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "worldrt" / "node_modules"


def _read(src: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        package = json.loads((src / "package.json").read_text())
        lock = json.loads((src / "package-lock.json").read_text())
    except (OSError, ValueError) as exc:
        raise ComponentError(f"{src}: package.json or package-lock.json cannot be read as JSON: {exc}") from None
    if not isinstance(package, dict) or not isinstance(lock, dict) or not isinstance(lock.get("packages", {}), dict):
        raise ComponentError(f"{src}: package.json and package-lock.json must each hold a JSON object")
    return package, lock


def shareable(src: Path) -> bool:
    """Whether ``src``'s install is its pins alone: its dependencies all come from a registry (a folder or file
    of its own, ``file:``, would be missing from a tree installed away from its sources), and neither a
    script of its own that npm runs on install nor an .npmrc of its own takes part."""
    package, lock = _read(src)
    scripts = package.get("scripts")
    if (src / ".npmrc").exists() or (isinstance(scripts, dict) and _INSTALL_SCRIPTS & set(scripts)):
        return False
    for name, entry in (lock.get("packages") or {}).items():
        if not name:
            continue
        if not name.startswith("node_modules/") or not isinstance(entry, dict) or entry.get("link") \
                or str(entry.get("resolved", "")).startswith("file:"):
            return False
    return True


def pins_key(src: Path, versions: str) -> str:
    """The key of the tree ``npm ci`` would install for ``src`` with node and npm at ``versions``."""
    package, lock = _read(src)
    packages = dict(lock.get("packages") or {})
    root = packages.pop("", {})
    pins = {
        "versions": versions,
        "lockfileVersion": lock.get("lockfileVersion"),
        "packages": packages,
        "root": {name: root.get(name) for name in _DEPENDENCY_FIELDS} if isinstance(root, dict) else root,
        "package": {name: package.get(name) for name in _DEPENDENCY_FIELDS},
    }
    return hashlib.sha256(json.dumps(pins, sort_keys=True).encode()).hexdigest()[:24]


def node_modules(src: Path, cache: Path, versions: str, install: Callable[[Path], None]) -> Path:
    """The node_modules folder for ``src``'s pins. Unless the cache has it, ``install`` is called on a scratch
    folder holding ``src``'s package.json and package-lock.json (it runs ``npm ci`` there); what it raises
    goes to the caller and nothing is kept."""
    tree = cache / pins_key(src, versions)
    modules = tree / "node_modules"
    if modules.is_dir():
        with contextlib.suppress(OSError):  # a cache this user may read and not write is used as it is
            os.utime(tree)
        return modules
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".install-") as scratch:
        for name in ("package.json", "package-lock.json"):
            shutil.copy2(src / name, Path(scratch) / name)
        install(Path(scratch))
        (Path(scratch) / "node_modules").mkdir(exist_ok=True)  # npm makes none when nothing is pinned
        try:
            os.rename(scratch, tree)
        except OSError:
            if not modules.is_dir():  # a build beside this one did not install the same pins first
                raise
        else:
            os.mkdir(scratch)  # TemporaryDirectory removes it
            os.utime(tree)
    _evict(cache, keep=tree)
    return modules


def _evict(cache: Path, keep: Path) -> None:
    trees = sorted((p for p in cache.iterdir() if not p.name.startswith(".") and p != keep),
                   key=_used, reverse=True)
    for old in trees[KEEP - 1:]:
        shutil.rmtree(old, ignore_errors=True)


def _used(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


__all__ = ["KEEP", "default_cache", "node_modules", "pins_key", "shareable"]
