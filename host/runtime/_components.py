"""Load a component file: tell what it is, compile it once per content hash (wasmtime's serialized form
is kept in a cache directory), and check it fits the world."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import wasmtime
from wasmtime import Config, Engine, WasmtimeError
from wasmtime.component import Component

from worldrt.host.runtime._errors import ComponentError
from worldrt.host.runtime._fit import check_component

log = logging.getLogger("worldrt.host")
DEFAULT_CACHE_DIR = Path(".worldrt/cache/components")

_MAGIC = b"\0asm"
_CORE_VERSION = b"\x01\x00\x00\x00"
_COMPONENT_LAYER = b"\x01\x00"  # bytes 6-7 of a component's preamble (bytes 4-5 are its version)


@dataclass(frozen=True)
class LoadedComponent:
    """A compiled component that fits the world, ready to instantiate any number of times."""

    name: str
    path: Path | None
    digest: str
    size_bytes: int
    component: Component
    imports: tuple[str, ...]
    exports: tuple[str, ...]
    cached: bool
    load_ms: float


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def wasm_binary(data: bytes, label: str) -> bytes:
    """``data`` as a component binary (WAT text is translated); ComponentError for anything else."""
    if not data.startswith(_MAGIC):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        if "(component" not in text and "(module" not in text:
            raise ComponentError(f"{label} is not WebAssembly: no \\0asm header and not WAT text")
        try:
            data = bytes(wasmtime.wat2wasm(text))
        except WasmtimeError as exc:
            raise ComponentError(f"{label} is not valid WAT: {_first_line(exc)}") from None
    if len(data) < 8:
        raise ComponentError(f"{label} is truncated: {len(data)} bytes")
    if data[4:8] == _CORE_VERSION:
        raise ComponentError(f"{label} is a core WebAssembly module, not a component; wrap it as a component "
                             "(componentize-py, or wasm-tools component new) that exports run")
    if data[6:8] != _COMPONENT_LAYER:
        raise ComponentError(f"{label} is WebAssembly of an unknown kind (preamble {data[4:8].hex()})")
    return data


class ComponentCache:
    """Compiled components on disk, one file per (content hash, engine configuration)."""

    def __init__(self, engine: Engine, directory: Path | None, engine_key: str) -> None:
        self.engine = engine
        self.directory = directory
        self.engine_key = engine_key

    def path_for(self, digest: str) -> Path | None:
        if self.directory is None:
            return None
        key = hashlib.sha256(f"{digest}:{self.engine_key}".encode()).hexdigest()[:32]
        return self.directory / f"{digest[:16]}-{key}.cwasm"

    def get(self, digest: str) -> Component | None:
        path = self.path_for(digest)
        if path is None or not path.is_file():
            return None
        try:
            # Memory-maps the file: entries are never changed in place (put() renames a new file over
            # the old one, get() unlinks a bad one), so a mapped component never sees its file change.
            return Component.deserialize_file(self.engine, str(path))
        except WasmtimeError:
            # Written by another wasmtime build or cut short: compile again and replace it.
            path.unlink(missing_ok=True)
            return None

    @contextlib.contextmanager
    def compiling(self, digest: str) -> Iterator[None]:
        """Held while ``digest`` is compiled: processes sharing the directory take turns, so one compiles
        and the others read its entry (a Python component is seconds of CPU). Without a directory, or one
        that cannot hold the lock file, each compiles on its own."""
        path = self.path_for(digest)
        lock = None
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                lock = os.open(path.parent / f".{path.name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                lock = None
        try:
            if lock is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)
            yield
        finally:
            if lock is not None:
                os.close(lock)

    def put(self, digest: str, component: Component) -> None:
        """Keep ``component`` for the next load; a directory that cannot take it (read-only, full, not a
        directory) only costs that load, and is said in the log."""
        path = self.path_for(digest)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".cwasm")
        except OSError as exc:
            _not_kept(path.parent, exc)
            return
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(component.serialize())
            os.chmod(tmp, 0o444)
            os.replace(tmp, path)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            _not_kept(path.parent, exc)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _not_kept(directory: Path, exc: OSError) -> None:
    log.warning("cannot keep the compiled component in %s (%s): it is compiled again at its next load",
                directory, exc.strerror or exc)


def new_engine() -> tuple[Engine, str]:
    """The engine every component is compiled for, and the key of its configuration in the cache."""
    config = Config()
    config.epoch_interruption = True
    return Engine(config), f"wasmtime-{importlib.metadata.version('wasmtime')}-epoch_interruption"


@dataclass(frozen=True)
class Compiled:
    binary: bytes
    digest: str
    component: Component
    cached: bool


class ComponentLoader:
    def __init__(self, engine: Engine, cache: ComponentCache) -> None:
        self.engine = engine
        self.cache = cache

    def compile(self, data: bytes, label: str) -> Compiled:
        """Compile a component binary or WAT text, or take it from the cache; no check of its imports."""
        binary = wasm_binary(data, label)
        digest = hashlib.sha256(binary).hexdigest()
        component = self.cache.get(digest)
        if component is not None:
            return Compiled(binary, digest, component, cached=True)
        with self.cache.compiling(digest):
            component = self.cache.get(digest)  # compiled by another process meanwhile
            if component is not None:
                return Compiled(binary, digest, component, cached=True)
            try:
                component = Component(self.engine, binary)
            except WasmtimeError as exc:
                raise ComponentError(f"{label} does not compile as a component: {_first_line(exc)}") from None
            self.cache.put(digest, component)
        return Compiled(binary, digest, component, cached=False)

    def load(self, path: str | os.PathLike[str]) -> LoadedComponent:
        """Load a component file (binary or WAT text)."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ComponentError(f"cannot read {path}: {exc.strerror or exc}") from None
        return self.load_bytes(data, path.stem, path=path, label=str(path))

    def load_bytes(self, data: bytes, name: str, *, path: Path | None = None,
                   label: str | None = None) -> LoadedComponent:
        """Load a component from its bytes; ``name`` is how calls from it identify their source."""
        started = time.perf_counter()
        label = label or name
        compiled = self.compile(data, label)
        imports, exports = check_component(compiled.component, self.engine, label)
        return LoadedComponent(
            name=name, path=path, digest=compiled.digest, size_bytes=len(compiled.binary),
            component=compiled.component, imports=imports, exports=exports, cached=compiled.cached,
            load_ms=(time.perf_counter() - started) * 1000,
        )
