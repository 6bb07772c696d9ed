"""Components and files: the generator's file functions from a Python guest. (A component built against the
first release of worldrt:verse@0.1.0, before they were added, still loading and running: test_wit_versions.)"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.support.components import CACHE, built_example
from worldrt.host.routing import DirectRouter
from worldrt.host.runtime import ComponentRuntime, GuestError
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

pytestmark = pytest.mark.daemons


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

