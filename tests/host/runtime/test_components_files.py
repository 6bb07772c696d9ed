"""Components and files: the generator's file functions from a Python guest, and a component built against
the first release of worldrt:verse@0.1.0 (before they were added) still loading and running."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest
from wasmtime.component import ComponentInstanceType

from tests.support.components import CACHE, FIXTURES, built_example
from worldrt.host.routing import DirectRouter
from worldrt.host.runtime import ComponentRuntime, GuestError, build_component, wit_interface
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb
from worldrt.wit import wit_dir

pytestmark = pytest.mark.daemons
FIRST_WIT = wit_dir("0.1.0")  # the text of its first release


@pytest.fixture(scope="module")
def runtime(morph: ProviderDaemon) -> Iterator[ComponentRuntime]:
    with ComponentRuntime(DirectRouter({"generator": morph.channel}, timeout_s=30),
                          cache_dir=CACHE / "components") as rt:
        yield rt


def test_a_guest_writes_reads_and_lists_files_of_an_instance(runtime: ComponentRuntime, stub, instance: str) -> None:
    files = runtime.load(built_example("files"))
    out = json.loads(runtime.invoke(files, 1, json.dumps({"op": "put", "instance_id": instance,
                                                           "path": "notes/a.txt", "text": "from the guest"})))
    assert out == {"wrote": 14, "read": "from the guest", "mode": 0o640, "names": ["notes"]}
    seen = stub.Execute(pb.ExecuteRequest(instance_id=instance, code="open('/workspace/notes/a.txt').read()"))
    assert json.loads(seen.value_json) == "from the guest"


def test_a_guest_path_out_of_the_workspace_is_its_invalid_argument(runtime: ComponentRuntime, instance: str) -> None:
    files = runtime.load(built_example("files"))
    with pytest.raises(GuestError, match="INVALID_ARGUMENT: .*climbs out"):
        runtime.invoke(files, 1, json.dumps({"op": "put", "instance_id": instance, "path": "../escape", "text": "x"}))


def test_a_component_built_against_the_first_0_1_0_still_runs(runtime: ComponentRuntime, instance: str) -> None:
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in (FIXTURES / "oldcaller" / "app.py",
                                                               FIRST_WIT / "verse.wit"))).hexdigest()[:16]
    out = CACHE / "fixtures" / f"first-0.1.0-{digest}" / "oldcaller.wasm"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        build_component(FIXTURES / "oldcaller", out, wit_dir=FIRST_WIT)
    old = runtime.load(out)
    generator = old.component.type.imports(runtime.engine)[wit_interface("generator", "0.1.0")].ty
    assert isinstance(generator, ComponentInstanceType)
    assert "execute" in generator.exports(runtime.engine) and "write-files" not in generator.exports(runtime.engine)
    assert json.loads(runtime.invoke(old, 1, json.dumps({"instance_id": instance, "code": "6*7", "calls": 2}))) == \
        {"calls": 2}
    assert json.loads(runtime.invoke(old, 1, json.dumps({"instance_id": "new", "calls": 1}))) == {"calls": 1}
