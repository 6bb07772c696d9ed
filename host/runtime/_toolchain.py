"""Build a verse component (Python with componentize-py, JavaScript with componentize-js through npm), and
tell what a component file imports and exports."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from wasmtime.component import ComponentInstanceType, EnumType, FuncType, RecordType

from worldrt.host.runtime._components import (
    DEFAULT_CACHE_DIR,
    ComponentCache,
    ComponentLoader,
    new_engine,
)
from worldrt.host.runtime._errors import ComponentError
from worldrt.host.runtime._fit import check_component, render_func, world_versions
from worldrt.host.runtime._npm_deps import default_cache as default_deps_cache
from worldrt.host.runtime._npm_deps import node_modules, shareable
from worldrt.wit import WIT_DIR

# componentize-py's console script, run from the installed package by this interpreter.
_COMPONENTIZE_PY = "import sys, componentize_py; sys.argv[0] = 'componentize-py'; componentize_py.script()"


@dataclass(frozen=True)
class BuildResult:
    path: Path
    size_bytes: int
    seconds: float


@dataclass(frozen=True)
class ComponentInfo:
    """What ``inspect_component`` finds. ``imports`` maps each imported interface to its functions and
    their signatures; ``exports`` maps each exported function to its signature. ``problem`` says why
    this host would refuse to run it (None when it fits the world)."""

    path: Path
    size_bytes: int
    digest: str
    imports: dict[str, dict[str, str]] = field(default_factory=dict)
    exports: dict[str, str] = field(default_factory=dict)
    problem: str | None = None
    # The versions of worldrt:verse its imports select (one, unless it mixes them).
    wit_versions: tuple[str, ...] = ()


def _failure(stderr: str) -> str:
    """The tool's reason: npm's first two error lines (what went wrong and what it found), else the last line
    (componentize-py's innermost cause)."""
    npm = [text for line in stderr.splitlines() if line.startswith(("npm error ", "npm ERR! "))
           and (text := line.split(" ", 2)[-1].strip()) and not text.startswith(("code ", "A complete log"))]
    if npm:
        return " ".join(npm[:2])
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def build_component(src_dir: str | os.PathLike[str], out_path: str | os.PathLike[str], *, module: str = "app",
                    world: str = "verse", wit_dir: Path = WIT_DIR, timeout_s: float = 600.0) -> BuildResult:
    """Build the component in ``src_dir`` into ``out_path``: a folder with a package.json is JavaScript (see
    build_js_component), otherwise Python (entry module ``app.py`` with ``class WitWorld``), built with
    componentize-py offline. ComponentError with the toolchain's reason on failure."""
    src, out = Path(src_dir), Path(out_path)
    if (src / "package.json").is_file():
        return build_js_component(src, out, wit_dir=wit_dir, timeout_s=timeout_s)
    if not (src / f"{module}.py").is_file():
        raise ComponentError(f"{src} has no {module}.py: a Python verse component's entry module defines "
                             "class WitWorld(wit_world.WitWorld) with run(self, verse_id, args)")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    argv = [sys.executable, "-c", _COMPONENTIZE_PY, "-q", "-d", str(wit_dir), "-w", world,
            "componentize", "-p", str(src), module, "-o", tmp]
    started = time.perf_counter()
    try:
        env = {**os.environ, "RUST_BACKTRACE": "0", "RUST_LIB_BACKTRACE": "0"}
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL,
                              env=env)
        if proc.returncode != 0:
            if "No module named 'componentize_py'" in proc.stderr:
                raise ComponentError("componentize-py is not installed here: pip install componentize-py")
            raise ComponentError(f"componentize-py could not build {src}: {_failure(proc.stderr)}")
        os.replace(tmp, out)
    except subprocess.TimeoutExpired:
        raise ComponentError(f"componentize-py did not finish building {src} within {timeout_s:g} s") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return BuildResult(path=out, size_bytes=out.stat().st_size, seconds=time.perf_counter() - started)


def build_js_component(src: Path, out: Path, *, wit_dir: Path = WIT_DIR, timeout_s: float = 600.0,
                       deps_cache: Path | None = None) -> BuildResult:
    """Build the JavaScript component in ``src``: its files are copied to a scratch folder (node_modules and
    all stay out of the source tree) beside the node_modules of the versions its package-lock.json pins
    (installed by ``npm ci`` into ``deps_cache`` once for every build with the same pins; in the scratch folder
    when its install is more than its pins, see ``_npm_deps.shareable``), and its ``build`` script
    (componentize-js or jco componentize) writes $WORLDRT_OUT from the WIT in $WORLDRT_WIT."""
    missing = [name for name in ("package-lock.json",) if not (src / name).is_file()]
    if missing:
        raise ComponentError(f"{src} has no package-lock.json: run `npm install` there once so that builds "
                             "install pinned versions")
    try:
        scripts = json.loads((src / "package.json").read_text()).get("scripts") or {}
    except (OSError, ValueError) as exc:
        raise ComponentError(f"{src}/package.json cannot be read as JSON: {exc}") from None
    if "build" not in scripts:
        raise ComponentError(f"{src}/package.json has no `build` script: it should run componentize-js "
                             '(e.g. "componentize-js app.js --wit \"$WORLDRT_WIT\" --world-name verse '
                             '--disable http fetch-event --out \"$WORLDRT_OUT\"")')
    npm = shutil.which("npm")
    if npm is None:
        raise ComponentError("npm is not installed here: a JavaScript component needs node and npm "
                             "(Debian: apt-get install nodejs npm)")
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    env = {**os.environ, "WORLDRT_WIT": str(Path(wit_dir).resolve()), "npm_config_audit": "false",
           "npm_config_fund": "false", "npm_config_update_notifier": "false"}

    def run(step: str, argv: list[str], cwd: Path) -> None:
        left = timeout_s - (time.perf_counter() - started)
        try:
            proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=max(left, 1.0),
                                  stdin=subprocess.DEVNULL, env=env)
        except subprocess.TimeoutExpired:
            raise ComponentError(f"{step} did not finish building {src} within {timeout_s:g} s") from None
        if proc.returncode != 0:
            raise ComponentError(f"{step} could not build {src}: {_failure(proc.stderr or proc.stdout)}")

    def npm_ci(folder: Path) -> None:
        run("npm ci", [npm, "ci", "--no-audit", "--no-fund"], folder)

    modules = None
    if shareable(src):
        versions = f"node {_tool_version('node')} npm {_tool_version(npm)}"
        modules = node_modules(src, deps_cache or default_deps_cache(), versions, npm_ci)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.build-") as scratch:
        work = Path(scratch) / "src"
        shutil.copytree(src, work, ignore=shutil.ignore_patterns("node_modules", "*.wasm"))
        if modules is None:
            npm_ci(work)
        else:
            (work / "node_modules").symlink_to(modules, target_is_directory=True)
        tmp = Path(scratch) / out.name
        env["WORLDRT_OUT"] = str(tmp)
        run("npm run build", [npm, "run", "--silent", "build"], work)
        if not tmp.is_file():
            raise ComponentError(f"the build script of {src} wrote no component to $WORLDRT_OUT")
        os.replace(tmp, out)
    return BuildResult(path=out, size_bytes=out.stat().st_size, seconds=time.perf_counter() - started)


def source_digest(src_dir: Path, wit_dir: Path = WIT_DIR) -> str:
    """What a build of ``src_dir`` depends on: its sources (Python, or JavaScript with its package files), the
    WIT, and the toolchain (componentize-py's version, or node's and the lock file's pins)."""
    digest = hashlib.sha256()
    if (src_dir / "package.json").is_file():
        digest.update(f"node {_tool_version('node')}".encode())
        sources = sorted(p for p in src_dir.glob("*") if p.suffix in (".js", ".mjs", ".json") and p.is_file())
    else:
        digest.update(importlib.metadata.version("componentize-py").encode())
        sources = sorted(src_dir.glob("*.py"))
    for path in sources + sorted(wit_dir.glob("*.wit")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


@functools.cache
def _tool_version(name: str) -> str:
    tool = shutil.which(name)
    if tool is None:
        return "none"
    try:
        return subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def built_once(src_dir: Path, out_path: Path, wit_dir: Path = WIT_DIR) -> Path:
    """``out_path``, built from ``src_dir`` against the WIT in ``wit_dir`` unless it exists. Processes
    building the same output take turns (a lock file beside it), so one builds and the others reuse its
    result."""
    if out_path.exists():
        return out_path
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path.parent / f".{out_path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not out_path.exists():
            build_component(src_dir, out_path, wit_dir=wit_dir)
    return out_path


def inspect_component(path: str | os.PathLike[str], *,
                      cache_dir: Path | None = DEFAULT_CACHE_DIR) -> ComponentInfo:
    """Compile (or take from the cache) the component at ``path`` and list its imports and exports.

    ComponentError when it is not a component at all; a component that does not fit the world is
    described, with ``problem`` set."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ComponentError(f"cannot read {path}: {exc.strerror or exc}") from None
    engine, engine_key = new_engine()
    compiled = ComponentLoader(engine, ComponentCache(engine, cache_dir, engine_key)).compile(data, str(path))
    ctype = compiled.component.type
    imports: dict[str, dict[str, str]] = {}
    for name, extern in ctype.imports(engine).items():
        item = extern.ty
        if isinstance(item, ComponentInstanceType):
            members = {n: e.ty for n, e in item.exports(engine).items()}
            names = tuple((t, n) for n, t in members.items() if isinstance(t, (RecordType, EnumType)))
            imports[name] = {n: render_func(t, names) for n, t in members.items() if isinstance(t, FuncType)}
        else:
            imports[name] = {}
    exports = {name: render_func(e.ty) for name, e in ctype.exports(engine).items() if isinstance(e.ty, FuncType)}
    problem = None
    try:
        check_component(compiled.component, engine, path.name)
    except ComponentError as exc:
        problem = str(exc)
    return ComponentInfo(path=path, size_bytes=len(compiled.binary), digest=compiled.digest, imports=imports,
                         exports=exports, problem=problem, wit_versions=world_versions(tuple(imports)))
