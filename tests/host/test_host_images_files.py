"""Images and files through the host: its Host service and the CLI forward them to a sandbox provider."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.support import HostProcess, cli
from worldrt.errors import NotFound
from worldrt.host import Host
from worldrt.providers import open_channel
from worldrt.v1 import host_pb, pb, rpc

pytestmark = pytest.mark.daemons


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    running = HostProcess(tmp_path_factory.mktemp("host"))
    yield running
    running.stop()


def test_the_host_service_lists_inspects_and_refuses_images(host: HostProcess) -> None:
    images = host.stub.ListImages(host_pb.HostImageRequest()).images
    default = next(i for i in images if "default" in i.names)
    assert any(p.startswith("numpy==") for p in default.packages)
    assert host.stub.InspectImage(host_pb.HostImageRequest(provider="modal", image="default")).digest == default.digest
    with pytest.raises(grpc.RpcError) as info:
        host.stub.InspectImage(host_pb.HostImageRequest(image="nothing-here"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND and "nothing-here" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        list(host.stub.BuildImage(host_pb.HostBuildImageRequest(build=pb.BuildImageRequest(
            name="offline", pip=["six"], index_url="http://127.0.0.1:9/simple"))))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.RpcError) as info:
        host.stub.ListImages(host_pb.HostImageRequest(provider="gensyn"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "morph or modal" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        host.stub.WriteFiles(host_pb.HostWriteFilesRequest(files=pb.WriteFilesRequest(
            instance_id="i-000000000000", files=[pb.FileEntry(path="a", data=b"x")])))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_the_cli_shows_images_and_says_why_a_build_fails(host: HostProcess) -> None:
    listed = cli(host.home, "image", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "default" in [n for i in json.loads(listed.stdout)["images"] for n in i["names"]]
    shown = cli(host.home, "image", "inspect", "default")
    assert shown.returncode == 0 and "numpy==" in shown.stdout
    failed = cli(host.home, "image", "build", "offline", "--pip", "six", "--index-url", "http://127.0.0.1:9/simple")
    assert failed.returncode == 69 and "could not be reached" in failed.stderr and "Traceback" not in failed.stderr
    refused = cli(host.home, "image", "rm", "default")
    assert refused.returncode == 5 and "cannot be deleted" in refused.stderr
    for args in (("files", "ls", "i-000000000000"), ("files", "read", "i-000000000000", "a.txt"),
                 ("files", "ls", "i-000000000000", "--provider", "modal")):
        missing = cli(host.home, *args)
        assert missing.returncode == 3 and "no instance 'i-000000000000'" in missing.stderr, missing.stderr
        assert missing.stderr.count("\n") == 1


def test_files_go_through_an_embedded_host(tmp_path: Path) -> None:
    with Host(tmp_path / "w.duckdb", tmp_path) as embedded:
        address = embedded.supervisor.ensure("morph").address
        with open_channel(address) as channel:
            morph = rpc.WorldRuntimeStub(channel)
            md = (("authorization", f"Bearer {embedded.supervisor.token}"),)
            iid = morph.Start(pb.StartRequest(), metadata=md).instance_id
            wrote = embedded.write_files(host_pb.HostWriteFilesRequest(files=pb.WriteFilesRequest(
                instance_id=iid, files=[pb.FileEntry(path="in/a.txt", data=b"A" * 3_000_000)])))
            assert wrote.bytes == 3_000_000
            chunks: list[pb.FileChunk] = []
            last = embedded.read_file(host_pb.HostReadFileRequest(read=pb.ReadFileRequest(
                instance_id=iid, path="in/a.txt")), chunks.append)
            assert last.eof and b"".join(c.data for c in chunks) + last.data == b"A" * 3_000_000
            listing = embedded.list_files(host_pb.HostListFilesRequest(list=pb.ListFilesRequest(instance_id=iid,
                                                                                               path="in")))
            assert [(e.name, e.size) for e in listing.entries] == [("a.txt", 3_000_000)]
            morph.Stop(pb.InstanceRef(instance_id=iid), metadata=md)


def test_files_and_images_take_the_routers_path_and_each_call_is_one_row(tmp_path: Path) -> None:
    """Like a component's call: recorded in the registry, failures with their status, the daemon's start-up
    wait counted on the first call."""
    with Host(tmp_path / "world.duckdb", tmp_path) as host:
        images = host.list_images(host_pb.HostImageRequest())
        assert any("default" in i.names for i in images.images)
        host.ensure_link("test", "generator", "morph")
        iid = host.call_provider(host_pb.ProviderCallRequest(source="test", start=pb.StartRequest())).instance.instance_id
        host.write_files(host_pb.HostWriteFilesRequest(files=pb.WriteFilesRequest(
            instance_id=iid, files=[pb.FileEntry(path="a.txt", data=b"routed")])))
        chunks: list[pb.FileChunk] = []
        last = host.read_file(host_pb.HostReadFileRequest(read=pb.ReadFileRequest(instance_id=iid, path="a.txt")),
                              chunks.append)
        assert b"".join(c.data for c in [*chunks, last]) == b"routed"
        assert [e.path for e in host.list_files(host_pb.HostListFilesRequest(
            list=pb.ListFilesRequest(instance_id=iid))).entries] == ["a.txt"]
        with pytest.raises(NotFound):
            host.inspect_image(host_pb.HostImageRequest(image="nothing-here"))
        host.registry.flush()
        rows = host.registry.query("SELECT operation, output_result, startup_ms FROM provider_invocations "
                                   "WHERE provider_id = 'morph' ORDER BY invoked_at")
    assert [r["operation"] for r in rows] == ["list-images", "start", "write-files", "read-file", "list-files",
                                              "inspect-image"]
    assert rows[0]["startup_ms"] > 0 and all(r["startup_ms"] == 0 for r in rows[1:])
    assert json.loads(rows[-1]["output_result"])["error"] == "NOT_FOUND"
