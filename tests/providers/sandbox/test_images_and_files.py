"""Images and files on morph and modal: what a sandbox's Python sees, files in and out of an instance
(confined to its workspace, within its limits, carried by snapshots and branches), the argv call shape,
and images built from an index in a sandbox of their own."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support import run, status_of
from worldrt.providers.sandbox import LAYER_ROOT
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

pytestmark = pytest.mark.daemons
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def modal(morph: ProviderDaemon) -> Iterator[ProviderDaemon]:
    """modal beside morph (one state folder): the two share their images."""
    with ProviderDaemon("modal", state_dir=morph.state_dir, options={"pool_size": "1"}) as daemon:
        yield daemon
        log = Path(daemon.log_path).read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]


@pytest.fixture(params=["morph", "modal"])
def gen(request: pytest.FixtureRequest, morph: ProviderDaemon) -> Any:
    return (morph if request.param == "morph" else request.getfixturevalue("modal")).stub


@pytest.fixture()
def inst(gen: Any) -> Iterator[str]:
    iid = gen.Start(pb.StartRequest()).instance_id
    yield iid
    try:
        gen.Stop(pb.InstanceRef(instance_id=iid))
    except grpc.RpcError:
        pass


def _write(stub: Any, iid: str, *files: tuple[str, bytes]) -> pb.WriteFilesReply:
    return stub.WriteFiles(pb.WriteFilesRequest(instance_id=iid, files=[pb.FileEntry(path=p, data=d) for p, d in files]))


def _read(stub: Any, iid: str, path: str) -> bytes:
    return b"".join(c.data for c in stub.ReadFile(pb.ReadFileRequest(instance_id=iid, path=path)))


# what a sandbox's Python sees ---------------------------------------------------------------------------
def test_a_sandbox_sees_no_package_of_the_daemon_and_the_default_image_has_numpy(gen: Any, inst: str) -> None:
    seen = json.loads(run(gen, inst, """
import importlib, site, sys
found = {}
for name in ("grpc", "duckdb", "cryptography", "worldrt", "pytest", "IPython", "numpy"):
    try:
        importlib.import_module(name)
        found[name] = True
    except ImportError:
        found[name] = False
[found, sys.prefix, [p for p in sys.path if "site-packages" in p or "dist-packages" in p]]
""").value_json)
    found, prefix, sites = seen
    assert found == {"grpc": False, "duckdb": False, "cryptography": False, "worldrt": False, "pytest": False,
                     "IPython": False, "numpy": True}
    assert prefix == "/opt/python-env" and all(p.startswith("/opt/python-env/") for p in sites)
    base_sites = json.loads(run(gen, inst, "import os, site\n[os.listdir(p) for p in site.getsitepackages("
                                           "[__import__('sys').base_prefix]) if os.path.isdir(p)]").value_json)
    assert all(listing == [] for listing in base_sites)
    assert run(gen, inst, "import numpy\nfloat(numpy.arange(4).sum())").value_json == "6.0"


# files ------------------------------------------------------------------------------------------------
def test_files_go_in_many_at_once_and_come_out_streamed(gen: Any, inst: str) -> None:
    big = bytes(range(256)) * (12 * 1024)  # 3 MiB: more than one chunk
    reply = gen.WriteFiles(pb.WriteFilesRequest(instance_id=inst, files=[
        pb.FileEntry(path="data/big.bin", data=big), pb.FileEntry(path="/workspace/run.sh", data=b"#!/bin/sh\necho hi\n",
                                                                  mode=0o755)]))
    assert (reply.files, reply.bytes) == (2, len(big) + 18)
    chunks = list(gen.ReadFile(pb.ReadFileRequest(instance_id=inst, path="data/big.bin")))
    assert len(chunks) >= 4 and chunks[-1].eof and b"".join(c.data for c in chunks) == big
    assert [c.offset for c in chunks[:2]] == [0, len(chunks[0].data)] and chunks[0].size == len(big)
    part = gen.ReadFileChunk(pb.ReadFileRequest(instance_id=inst, path="data/big.bin", offset=10, length=5))
    assert part.data == big[10:15] and part.size == len(big)
    listing = gen.ListFiles(pb.ListFilesRequest(instance_id=inst))
    assert [(e.name, e.kind) for e in listing.entries] == [("data", "dir"), ("run.sh", "file")]
    assert next(e for e in listing.entries if e.name == "run.sh").mode & 0o777 == 0o755
    assert [e.size for e in gen.ListFiles(pb.ListFilesRequest(instance_id=inst, path="data")).entries] == [len(big)]
    assert gen.Execute(pb.ExecuteRequest(instance_id=inst, argv=["./run.sh"])).stdout == "hi\n"
    assert run(gen, inst, "len(open('data/big.bin', 'rb').read())").value_json == str(len(big))


@pytest.mark.parametrize(("path", "why"), [
    ("../outside", "climbs out"), ("a/../../outside", "climbs out"), ("/etc/passwd", "outside the workspace"),
    ("/workspace/../etc/passwd", "outside the workspace"), ("/dev/zero", "outside the workspace"),
    ("out/passwd", "through a symlink"), ("zero", "through a symlink"), ("pipe", "not a regular file"),
])
def test_paths_out_of_the_workspace_and_special_files_are_invalid(gen: Any, inst: str, path: str, why: str) -> None:
    run(gen, inst, "import os\nos.symlink('/etc', 'out')\nos.symlink('/dev/zero', 'zero')\nos.mkfifo('pipe')")
    calls = [lambda: gen.ReadFileChunk(pb.ReadFileRequest(instance_id=inst, path=path)),
             lambda: list(gen.ReadFile(pb.ReadFileRequest(instance_id=inst, path=path)))]
    if why != "not a regular file":
        calls.append(lambda: gen.ListFiles(pb.ListFilesRequest(instance_id=inst, path=path)))
    calls.append(lambda: _write(gen, inst, (path if why != "through a symlink" else f"{path}/x", b"x")))
    for call in calls:
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        assert why in info.value.details() or (call is calls[-1] and "not a regular file" in info.value.details())
    assert json.loads(run(gen, inst, "open('/etc/hostname').read() if False else 1").value_json) == 1


def test_a_missing_file_is_not_found_and_the_instance_goes_on(gen: Any, inst: str) -> None:
    assert status_of(lambda: gen.ReadFileChunk(pb.ReadFileRequest(instance_id=inst, path="nope"))) == \
        grpc.StatusCode.NOT_FOUND
    assert status_of(lambda: _write(gen, "i-000000000000", ("a", b"x"))) == grpc.StatusCode.NOT_FOUND
    assert run(gen, inst, "1 + 1").value_json == "2"


def test_files_past_the_instance_limits_are_resource_exhausted_and_the_quota_holds(gen: Any) -> None:
    iid = gen.Start(pb.StartRequest(limits=pb.Limits(disk_mb=8, file_size_mb=4))).instance_id
    try:
        assert status_of(lambda: _write(gen, iid, ("one.bin", b"x" * (5 * MIB)))) == \
            grpc.StatusCode.RESOURCE_EXHAUSTED
        assert status_of(lambda: _write(gen, iid, *((f"f{i}", b"x" * (3 * MIB)) for i in range(3)))) == \
            grpc.StatusCode.RESOURCE_EXHAUSTED
        # Each write fits the daemon's checks; the third finds the 8 MiB disk full, inside the sandbox.
        _write(gen, iid, ("a.bin", b"x" * (3 * MIB)))
        _write(gen, iid, ("b.bin", b"x" * (3 * MIB)))
        with pytest.raises(grpc.RpcError) as info:
            _write(gen, iid, ("c.bin", b"x" * (3 * MIB)))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "disk" in info.value.details()
        filled = run(gen, iid, "try:\n    open('d.bin', 'wb').write(b'x' * 2**22)\n    r = 'wrote'\n"
                               "except OSError as e:\n    r = e.errno\nr")
        assert filled.value_json == "28"  # ENOSPC: the write failed inside, the instance serves on
        assert _read(gen, iid, "a.bin") == b"x" * (3 * MIB)
    finally:
        gen.Stop(pb.InstanceRef(instance_id=iid))


def test_snapshots_and_branches_carry_the_files(gen: Any, morph: ProviderDaemon, inst: str) -> None:
    _write(gen, inst, ("keep/me.txt", b"carried"))
    snap = gen.Snapshot(pb.SnapshotRequest(instance_id=inst))
    if gen is morph.stub:
        heirs = [i.instance_id for i in gen.Branch(pb.BranchRequest(snapshot_id=snap.snapshot_id, count=2)).instances]
    else:
        heirs = [gen.Start(pb.StartRequest(snapshot_id=snap.snapshot_id)).instance_id]
    for iid in heirs:
        assert _read(gen, iid, "keep/me.txt") == b"carried"
        gen.Stop(pb.InstanceRef(instance_id=iid))
    gen.Stop(pb.InstanceRef(instance_id=snap.snapshot_id))


def test_branches_see_neither_siblings_nor_parent_files(stub: Any, instance: str) -> None:
    _write(stub, instance, ("parent.txt", b"p"))
    snap = stub.Snapshot(pb.SnapshotRequest(instance_id=instance))
    a, b = (i.instance_id for i in stub.Branch(pb.BranchRequest(snapshot_id=snap.snapshot_id, count=2)).instances)
    _write(stub, a, ("mine/a.txt", b"a"))
    run(stub, a, "open('/tmp/a.tmp', 'w').write('a')")
    _write(stub, instance, ("late.txt", b"after the snapshot"))
    for other in (b, instance):
        names = [e.name for e in stub.ListFiles(pb.ListFilesRequest(instance_id=other)).entries]
        assert "mine" not in names and (other == instance or "late.txt" not in names)
        assert run(stub, other, "import os\nos.path.exists('/tmp/a.tmp') or os.path.exists('/workspace/mine')"
                   ).value_json == "false"
        assert status_of(lambda o=other: stub.ReadFileChunk(pb.ReadFileRequest(instance_id=o, path="mine/a.txt"))) \
            == grpc.StatusCode.NOT_FOUND
    _write(stub, b, ("parent.txt", b"changed by b"))
    run(stub, b, "open('/tmp/a.tmp', 'w').write('b')")
    assert _read(stub, a, "parent.txt") == b"p" and _read(stub, instance, "parent.txt") == b"p"
    assert run(stub, a, "open('/tmp/a.tmp').read()").value_json == '"a"'
    assert "late.txt" not in [e.name for e in stub.ListFiles(pb.ListFilesRequest(instance_id=a)).entries]
    for iid in (a, b, snap.snapshot_id):
        stub.Stop(pb.InstanceRef(instance_id=iid))


# the argv call shape --------------------------------------------------------------------------------------
def test_execute_takes_an_argv_as_the_modal_sample_does(gen: Any, inst: str, modal: ProviderDaemon) -> None:
    result = gen.Execute(pb.ExecuteRequest(instance_id=inst, argv=["python", "-c", "print('verse executed')"]))
    assert (result.stdout, result.exit_code) == ("verse executed\n", 0)
    one_shot = modal.stub.Execute(pb.ExecuteRequest(argv=["python", "-c", "import numpy, sys; print(sys.prefix)"]))
    assert one_shot.stdout == "/opt/python-env\n"
    missing = gen.Execute(pb.ExecuteRequest(instance_id=inst, argv=["no-such-program"]))
    assert missing.exit_code == 127 and "no-such-program" in missing.error
    assert status_of(lambda: gen.Execute(pb.ExecuteRequest(instance_id=inst, argv=["", "x"]))) == \
        grpc.StatusCode.INVALID_ARGUMENT
    streamed = list(gen.ExecuteStream(pb.ExecuteRequest(instance_id=inst, argv=["sh", "-c", "echo one; echo two"])))
    assert "".join(e.stdout for e in streamed) == "one\ntwo\n" and streamed[-1].result.exit_code == 0


# images ------------------------------------------------------------------------------------------------
def test_an_unknown_image_is_not_found_and_the_default_cannot_be_deleted(gen: Any) -> None:
    assert status_of(lambda: gen.Start(pb.StartRequest(image="no-such-image"))) == grpc.StatusCode.NOT_FOUND
    assert status_of(lambda: gen.InspectImage(pb.ImageRef(image="no-such-image"))) == grpc.StatusCode.NOT_FOUND
    assert status_of(lambda: gen.DeleteImage(pb.ImageRef(image="default"))) == grpc.StatusCode.FAILED_PRECONDITION
    default = gen.InspectImage(pb.ImageRef(image="default"))
    assert any(p.startswith("numpy==") for p in default.packages) and "default" in default.names
    iid = gen.Start(pb.StartRequest(image="default")).instance_id
    assert gen.Stop(pb.InstanceRef(instance_id=iid)).image == default.digest


def _build(stub: Any, **fields: Any) -> tuple[list[pb.BuildProgress], pb.Image]:
    events = list(stub.BuildImage(pb.BuildImageRequest(**fields), timeout=600))
    return [e.progress for e in events if e.HasField("progress")], events[-1].image


def _staging_left(morph: ProviderDaemon) -> list[str]:
    token = (morph.state_dir / "images" / "layers-token").read_text().strip()
    return [p.name for p in (LAYER_ROOT / token / "staging").iterdir()]


def test_a_build_that_cannot_reach_its_index_fails_clearly_and_leaves_nothing(stub: Any, morph: ProviderDaemon) -> None:
    before = [i.digest for i in stub.ListImages(pb.ListImagesRequest()).images]
    with pytest.raises(grpc.RpcError) as info:
        _build(stub, name="offline", pip=["six"], index_url="http://127.0.0.1:9/simple")
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "127.0.0.1:9" in info.value.details()
    assert [i.digest for i in stub.ListImages(pb.ListImagesRequest()).images] == before
    assert _staging_left(morph) == []
    assert status_of(lambda: stub.Start(pb.StartRequest(image="offline"))) == grpc.StatusCode.NOT_FOUND
    for bad in (["-e", "/etc"], ["six @ https://example.com/six.whl"], ["../local"]):
        assert status_of(lambda b=bad: _build(stub, name="bad", pip=b)) == grpc.StatusCode.INVALID_ARGUMENT
    assert status_of(lambda: _build(stub, name="Bad Name", pip=["six"])) == grpc.StatusCode.INVALID_ARGUMENT


def test_an_image_built_from_pypi_is_what_its_instances_import(stub: Any, morph: ProviderDaemon,
                                                                modal: ProviderDaemon) -> None:
    """Needs PyPI (six is small and pure Python)."""
    progress, image = _build(stub, name="with-six", pip=["six"], files=[pb.FileEntry(path="conf/a.txt", data=b"A")])
    assert [p for p in image.packages if p.startswith("six==")] and not image.cached
    assert {p.stage for p in progress} >= {"resolving", "installing", "done"} and progress[-1].fraction == 1.0
    again_progress, again = _build(stub, name="six-again", pip=["six"], files=[pb.FileEntry(path="conf/a.txt",
                                                                                            data=b"A")])
    assert again.digest == image.digest and again.cached and [p.stage for p in again_progress] == ["cached"]
    assert set(stub.InspectImage(pb.ImageRef(image=image.digest[:12])).names) == {"with-six", "six-again"}
    for generator in (stub, modal.stub):  # modal sees morph's images: one store per state folder
        started = generator.Start(pb.StartRequest(image="with-six"))
        assert started.image == image.digest
        seen = run(generator, started.instance_id, "import importlib.util as u\n"
                   "[bool(u.find_spec(m)) for m in ('six', 'numpy', 'grpc')] + "
                   "[open('/opt/python-env/files/conf/a.txt').read()]").value_json
        assert json.loads(seen) == [True, False, False, "A"]
        snap = generator.Snapshot(pb.SnapshotRequest(instance_id=started.instance_id))
        assert snap.image == image.digest
        if generator is stub:  # a layer in use on this daemon stays
            assert status_of(lambda: stub.DeleteImage(pb.ImageRef(image=image.digest))) == \
                grpc.StatusCode.FAILED_PRECONDITION
        generator.Stop(pb.InstanceRef(instance_id=snap.snapshot_id))
        generator.Stop(pb.InstanceRef(instance_id=started.instance_id))
    stub.DeleteImage(pb.ImageRef(image="six-again"))
    assert stub.InspectImage(pb.ImageRef(image="with-six")).names == ["with-six"]
    gone = stub.DeleteImage(pb.ImageRef(image="with-six"))
    assert list(gone.names) == [] and status_of(lambda: stub.Start(pb.StartRequest(image=image.digest))) == \
        grpc.StatusCode.NOT_FOUND
    assert _staging_left(morph) == []


def test_an_unknown_package_is_not_found(stub: Any, morph: ProviderDaemon) -> None:
    """Needs PyPI."""
    with pytest.raises(grpc.RpcError) as info:
        _build(stub, name="nothing", pip=["worldrt-no-such-package-7f3a9c"])
    assert info.value.code() == grpc.StatusCode.NOT_FOUND and "worldrt-no-such-package-7f3a9c" in info.value.details()
    assert _staging_left(morph) == []


def test_a_build_past_its_size_limit_is_resource_exhausted_and_leaves_nothing(stub: Any, morph: ProviderDaemon) -> None:
    """Needs PyPI: numpy's wheel unpacks to far more than the 4 MiB the build may fill."""
    with pytest.raises(grpc.RpcError) as info:
        _build(stub, name="too-big", pip=["numpy"], max_size_mb=4)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "size limit" in info.value.details()
    assert _staging_left(morph) == []
    assert status_of(lambda: stub.InspectImage(pb.ImageRef(image="too-big"))) == grpc.StatusCode.NOT_FOUND
