"""The committed generated code is exactly what the pinned compiler makes from the .proto."""

from pathlib import Path

import pytest

from worldrt import _codegen

pytestmark = pytest.mark.pure


def test_regenerating_changes_nothing(tmp_path: Path) -> None:
    written = _codegen.generate(tmp_path)
    assert {p.name for p in written} == {f"{stem}_pb2{suffix}" for stem in ("world_runtime", "host")
                                         for suffix in (".py", ".pyi", "_grpc.py")}
    committed = _codegen.PROTO_ROOT / "worldrt" / "v1"
    for fresh in written:
        stale = f"{fresh.name} is stale: run python -m worldrt._codegen"
        assert fresh.read_bytes() == (committed / fresh.name).read_bytes(), stale


def test_generated_files_are_marked() -> None:
    committed = _codegen.PROTO_ROOT / "worldrt" / "v1"
    for name in ("world_runtime_pb2.py", "world_runtime_pb2_grpc.py", "host_pb2.py", "host_pb2_grpc.py"):
        assert "DO NOT EDIT" in (committed / name).read_text().splitlines()[1] + (committed / name).read_text()[:200]
