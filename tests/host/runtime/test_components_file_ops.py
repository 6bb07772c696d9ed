"""Components and the rest of a filesystem (worldrt:verse@0.2.0): the files example, built with
componentize-py, makes folders, stats, moves, reads by offset, watches (a bounded pull of the provider's
watch while a process of its own makes files) and removes, in a real morph instance through the host's
imports; paths out of the workspace are its invalid-argument."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import CACHE, built_example
from worldrt.host.routing import DirectRouter
from worldrt.host.runtime import OPERATIONS, ComponentRuntime, GuestError, LoadedComponent
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

pytestmark = pytest.mark.daemons


@pytest.fixture(scope="module")
def runtime(morph: ProviderDaemon) -> Iterator[ComponentRuntime]:
    with ComponentRuntime(DirectRouter({"generator": morph.channel}, timeout_s=60),
                          cache_dir=CACHE / "components") as rt:
        yield rt


@pytest.fixture(scope="module")
def files(runtime: ComponentRuntime) -> LoadedComponent:
    return runtime.load(built_example("files"))


def test_a_guest_makes_stats_moves_reads_watches_and_removes(runtime: ComponentRuntime, files: LoadedComponent,
                                                             instance: str, stub: Any) -> None:
    seen = json.loads(runtime.invoke(files, 1, json.dumps({"instance_id": instance, "dir": "box"})))
    assert seen["mkdir"] == [True, "dir", 0o750, False] and seen["mkdir_exists"] == "ALREADY_EXISTS"
    assert seen["stat"] == ["a.txt", "box/inner/a.txt", "file", 11]
    assert seen["move"] == ["box/b.txt", 11] and seen["stat_moved_away"] == "NOT_FOUND"
    assert seen["read"] == ["fil", 6, 11]
    watch = seen["watch"]
    # The watch was in place first, then the process's files came; max-events cut it at three changes.
    assert watch["events"][0][0] == "ready" and not watch["ended"]
    changes = watch["events"][1:]
    assert len(changes) == 3 and changes[0][0] == "create" and changes[0][1].startswith("box/inner/f")
    assert seen["idle_watch"] == {"events": ["ready", "ended"], "ended": True}
    assert seen["rmdir_not_empty"] != "ok"
    assert seen["remove"] == ["dir", True] and seen["stat_removed"] == "NOT_FOUND"
    assert seen["escape"] == "INVALID_ARGUMENT"
    # The daemon agrees: the folder is gone.
    listing = stub.ListFiles(pb.ListFilesRequest(instance_id=instance))
    assert "box" not in [e.name for e in listing.entries]


def test_a_folder_out_of_the_workspace_is_the_guests_invalid_argument(runtime: ComponentRuntime,
                                                                      files: LoadedComponent, instance: str) -> None:
    with pytest.raises(GuestError, match=r"^INVALID_ARGUMENT: "):
        runtime.invoke(files, 1, json.dumps({"instance_id": instance, "dir": "../outside"}))
    op = OPERATIONS[("generator", "watch-files")]
    assert op.pull and op.since == "0.2.0"
