"""JavaScript builds install their pinned dependencies once: every build with the same pins uses one tree,
a lock out of step with package.json is refused by npm ci and leaves nothing, a dependency of the package's
own (``file:``) is installed beside its sources, and only the latest trees are kept. Real npm, offline: the
packages here pin nothing from a registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worldrt.host.runtime import ComponentError, build_js_component
from worldrt.host.runtime._npm_deps import KEEP

pytestmark = pytest.mark.daemons
# The build script writes into $WORLDRT_OUT what ``expression`` gives, evaluated by node in the build folder.
WRITE = "node -e \"require('fs').writeFileSync(process.env.WORLDRT_OUT, String({}))\""


def _package(folder: Path, name: str, expression: str, **fields: object) -> Path:
    folder.mkdir(parents=True)
    package = {"name": name, "version": "1.0.0", "private": True, "scripts": {"build": WRITE.format(expression)},
               **fields}
    (folder / "package.json").write_text(json.dumps(package))
    lock = {"name": name, "version": "1.0.0", "lockfileVersion": 3, "requires": True,
            "packages": {"": {"name": name, "version": "1.0.0",
                              **{k: v for k, v in fields.items() if k == "dependencies"}}}}
    (folder / "package-lock.json").write_text(json.dumps(lock))
    return folder


def _trees(cache: Path) -> list[Path]:
    return sorted(cache.iterdir()) if cache.exists() else []


def test_builds_with_the_same_pins_install_once_and_share_the_tree(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _package(tmp_path / "first", "first", "'one'")
    built = build_js_component(first, tmp_path / "first.wasm", deps_cache=cache)
    assert built.path.read_text() == "one"
    [tree] = _trees(cache)
    # What the install left is what the next build with the same pins finds: npm ci does not run again.
    (tree / "node_modules" / "left-by-the-install").write_text("shared")
    other = _package(tmp_path / "other", "another-name",
                     "require('fs').readFileSync('node_modules/left-by-the-install', 'utf8')")
    assert build_js_component(other, tmp_path / "other.wasm", deps_cache=cache).path.read_text() == "shared"
    assert _trees(cache) == [tree]
    assert not (first / "node_modules").exists() and not (other / "node_modules").exists()
    # Other pins (an override is one) are another tree.
    pinned = _package(tmp_path / "pinned", "first", "'three'", overrides={"nothing-here": "1.0.0"})
    assert build_js_component(pinned, tmp_path / "pinned.wasm", deps_cache=cache).path.read_text() == "three"
    assert len(_trees(cache)) == 2


def test_a_lock_out_of_step_is_refused_by_npm_ci_and_nothing_is_kept(tmp_path: Path) -> None:
    src = _package(tmp_path / "src", "stale", "'never'")
    package = json.loads((src / "package.json").read_text())
    (src / "package.json").write_text(json.dumps({**package, "dependencies": {"left-pad": "1.3.0"}}))
    cache = tmp_path / "cache"
    with pytest.raises(ComponentError) as failure:
        build_js_component(src, tmp_path / "out.wasm", deps_cache=cache)
    message = str(failure.value)
    assert message.startswith(f"npm ci could not build {src}: `npm ci` can only install packages when your "
                              "package.json and package-lock.json"), message
    assert "Missing: left-pad@1.3.0 from lock file" in message and "\n" not in message, message
    assert _trees(cache) == [] and not (tmp_path / "out.wasm").exists()


def test_a_dependency_in_the_packages_own_folder_is_installed_beside_its_sources(tmp_path: Path) -> None:
    src = _package(tmp_path / "src", "with-helper", "require('helper')", dependencies={"helper": "file:helper"})
    (src / "helper").mkdir()
    (src / "helper" / "package.json").write_text(json.dumps({"name": "helper", "version": "1.0.0"}))
    (src / "helper" / "index.js").write_text("module.exports = 'from its own folder'\n")
    lock = json.loads((src / "package-lock.json").read_text())
    lock["packages"] |= {"helper": {"version": "1.0.0"}, "node_modules/helper": {"resolved": "helper", "link": True}}
    (src / "package-lock.json").write_text(json.dumps(lock))
    cache = tmp_path / "cache"
    assert build_js_component(src, tmp_path / "out.wasm", deps_cache=cache).path.read_text() == "from its own folder"
    assert _trees(cache) == []


def test_only_the_latest_trees_are_kept(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    trees: list[Path] = []
    for n in range(KEEP + 1):
        src = _package(tmp_path / f"src{n}", "same", f"{n}", overrides={f"nothing-{n}": "1.0.0"})
        build_js_component(src, tmp_path / f"out{n}.wasm", deps_cache=cache)
        trees.append(next(t for t in _trees(cache) if t not in trees))
    assert _trees(cache) == sorted(trees[1:]), "the least recently used tree is removed"


def test_a_package_with_an_install_script_of_its_own_is_installed_beside_its_sources(tmp_path: Path) -> None:
    made = "require('fs').writeFileSync('made-on-install', 'by its postinstall')"
    src = _package(tmp_path / "src", "scripted", "require('fs').readFileSync('made-on-install', 'utf8')")
    package = json.loads((src / "package.json").read_text())
    package["scripts"]["postinstall"] = f'node -e "{made}"'
    (src / "package.json").write_text(json.dumps(package))
    cache = tmp_path / "cache"
    assert build_js_component(src, tmp_path / "out.wasm", deps_cache=cache).path.read_text() == "by its postinstall"
    assert _trees(cache) == [] and not (src / "made-on-install").exists()
