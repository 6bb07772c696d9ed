"""The agent's bytecode handed to each sandbox: the install's own when it was compiled from the same source,
named for its path inside, never for the host's."""

from __future__ import annotations

import importlib.util
import marshal
import py_compile
from pathlib import Path
from types import CodeType
from typing import Any

import pytest

from worldrt.providers.sandbox import _bwrap

pytestmark = pytest.mark.pure

INSIDE = f"{_bwrap.AGENT_MOUNT}/probe.py"
SOURCE = b"def where():\n    return 'from the source'\n\nVALUE = where()\n"


def filenames(code: CodeType) -> set[str]:
    """The file names ``code`` and every code object nested in it carry."""
    return {code.co_filename}.union(*(filenames(k) for k in code.co_consts if isinstance(k, CodeType)))


def loaded(pyc: bytes) -> dict[str, Any]:
    """What the interpreter inside would check, and what the module's code does."""
    code = marshal.loads(pyc[16:])
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    return {"magic": pyc[:4] == importlib.util.MAGIC_NUMBER, "flags": int.from_bytes(pyc[4:8], "little"),
            "hash": pyc[8:16] == importlib.util.source_hash(SOURCE), "files": filenames(code),
            "value": namespace["VALUE"]}


def module(tmp_path: Path) -> Path:
    path = tmp_path / "probe.py"
    path.write_bytes(SOURCE)
    return path


def planted(path: Path, header: bytes) -> None:
    """A cached .pyc for ``path`` with ``header`` whose code says where it came from."""
    other = compile("def where():\n    return 'from the pyc'\n\nVALUE = where()\n", str(path), "exec")
    cached = Path(importlib.util.cache_from_source(str(path)))
    cached.parent.mkdir(exist_ok=True)
    cached.write_bytes(header + marshal.dumps(other))


def timestamp_header(path: Path) -> bytes:
    st = path.stat()
    return (importlib.util.MAGIC_NUMBER + (0).to_bytes(4, "little") +
            (int(st.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little") + (st.st_size & 0xFFFFFFFF).to_bytes(4, "little"))


def test_the_installs_bytecode_is_used_when_it_was_compiled_from_this_source(tmp_path: Path) -> None:
    path = module(tmp_path)
    planted(path, timestamp_header(path))
    got = loaded(_bwrap._bytecode.__wrapped__(INSIDE, SOURCE, str(path)))
    assert got == {"magic": True, "flags": 3, "hash": True, "files": {INSIDE}, "value": "from the pyc"}


def test_a_stale_or_foreign_pyc_is_passed_over_and_the_source_compiled(tmp_path: Path) -> None:
    path = module(tmp_path)
    header = timestamp_header(path)
    stale_mtime = header[:8] + (int(path.stat().st_mtime) - 10 & 0xFFFFFFFF).to_bytes(4, "little") + header[12:]
    other_size = header[:12] + (len(SOURCE) + 1).to_bytes(4, "little")
    other_magic = b"\x00\x00\r\n" + header[4:]
    wrong_hash = importlib.util.MAGIC_NUMBER + (0b11).to_bytes(4, "little") + importlib.util.source_hash(b"x = 1\n")
    unknown_flags = importlib.util.MAGIC_NUMBER + (0b10).to_bytes(4, "little") + header[8:]
    for header in (stale_mtime, other_size, other_magic, wrong_hash, unknown_flags):
        planted(path, header)
        got = loaded(_bwrap._bytecode.__wrapped__(INSIDE, SOURCE, str(path)))
        assert got["value"] == "from the source", header
        assert got["files"] == {INSIDE} and got["flags"] == 3 and got["hash"]
    cached = Path(importlib.util.cache_from_source(str(path)))
    cached.write_bytes(header[:10])
    assert loaded(_bwrap._bytecode.__wrapped__(INSIDE, SOURCE, str(path)))["value"] == "from the source"
    planted(path, timestamp_header(path))
    cached.write_bytes(cached.read_bytes()[:-8])  # cut short: marshal cannot read it
    assert loaded(_bwrap._bytecode.__wrapped__(INSIDE, SOURCE, str(path)))["value"] == "from the source"
    cached.unlink()
    assert loaded(_bwrap._bytecode.__wrapped__(INSIDE, SOURCE, str(path)))["value"] == "from the source"


def test_a_checked_hash_pyc_of_the_same_source_is_used(tmp_path: Path) -> None:
    path = module(tmp_path)
    py_compile.compile(str(path), invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH, doraise=True)
    pyc = Path(importlib.util.cache_from_source(str(path)))
    real = pyc.read_bytes()
    planted(path, real[:16])
    assert loaded(_bwrap._bytecode.__wrapped__(INSIDE, SOURCE, str(path)))["value"] == "from the pyc"


def test_the_agents_bytecode_names_no_host_path() -> None:
    """Every agent module as the daemon hands it in: its own path inside, the host's install nowhere."""
    for name in _bwrap.AGENT_FILES:
        installed = _bwrap.AGENT_DIR / name
        source = installed.read_bytes()
        pyc = _bwrap._bytecode.__wrapped__(f"{_bwrap.AGENT_MOUNT}/{name}", source, str(installed))
        assert filenames(marshal.loads(pyc[16:])) == {f"{_bwrap.AGENT_MOUNT}/{name}"}, name
        assert str(_bwrap.AGENT_DIR).encode() not in pyc and b"providers/sandbox" not in pyc, name
        assert pyc[8:16] == importlib.util.source_hash(source)
