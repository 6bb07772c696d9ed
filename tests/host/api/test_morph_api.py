"""The official morphcloud SDK (0.1.116) against `worldrt api serve morph`, sync and async, through a
real host: every call goes over the API's generator link to a real morph daemon and is recorded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from morphcloud.api import ApiError, MorphCloudClient

from tests.support import HostProcess, MorphApiServer, cli, wait_for
from worldrt.v1 import host_pb, pb

pytestmark = pytest.mark.daemons


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    running = HostProcess(tmp_path_factory.mktemp("morph-api-host"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def server(host: HostProcess) -> Iterator[MorphApiServer]:
    api = MorphApiServer(host.home, host=host.address)
    yield api
    assert api.stop() in (0, 130)
    assert "Traceback" not in api.log(), api.log()[-4000:]


@pytest.fixture(scope="module")
def client(server: MorphApiServer) -> MorphCloudClient:
    return server.client()


@pytest.fixture()
def instance(client: MorphCloudClient) -> Iterator[Any]:
    snap = client.snapshots.create(image_id="morphvm-minimal")
    inst = client.instances.start(snap.id)
    yield inst
    try:
        inst.stop()
    except ApiError:
        pass


def recorded(host: HostProcess, since: int) -> list[str]:
    """Operations the host recorded on morph since row ``since``, oldest first."""
    rows = host.stub.RecentInvocations(host_pb.RecentInvocationsRequest(limit=1000)).invocations
    return [r.operation for r in reversed(rows) if r.provider_id == "morph"][since:]


def morph_rows(host: HostProcess) -> int:
    return len(recorded(host, 0))


def test_images_list_the_default_image(client: MorphCloudClient) -> None:
    images = client.images.list()
    assert [i.id for i in images] == ["morphvm-minimal"]
    assert images[0].disk_size > 0 and images[0].created > 0


def test_the_whole_flow_runs_unchanged_and_is_recorded(client: MorphCloudClient, host: HostProcess) -> None:
    before = morph_rows(host)
    snapshot = client.snapshots.create(image_id="morphvm-minimal", vcpus=1, memory=512, disk_size=128)
    assert snapshot.status == "ready" and snapshot.spec.memory == 512 and snapshot.refs.image_id == "morphvm-minimal"
    instance = client.instances.start(snapshot.id, metadata={"who": "flow"})
    assert instance.status == "ready" and instance.refs.snapshot_id == snapshot.id
    assert instance.spec.memory == 512 and instance.metadata == {"who": "flow"}

    done = instance.exec("echo hi; echo oops >&2; exit 3")
    assert (done.exit_code, done.stdout, done.stderr) == (3, "hi\n", "oops\n")
    argv = instance.exec(["printf", "%s|", "a b", "c"])
    assert (argv.exit_code, argv.stdout) == (0, "a b|c|")

    chunks: list[str] = []
    errors: list[str] = []
    streamed = instance.exec("for k in 1 2 3; do echo $k; done; echo bad >&2; exit 4", on_stdout=chunks.append,
                             on_stderr=errors.append)
    assert (streamed.exit_code, streamed.stdout, streamed.stderr) == (4, "1\n2\n3\n", "bad\n")
    assert "".join(chunks) == "1\n2\n3\n" and "".join(errors) == "bad\n"

    instance.exec("echo parent > note.txt; echo parent > /tmp/note.txt")
    frozen = instance.snapshot(metadata={"kind": "manual"})
    assert frozen.status == "ready" and frozen.metadata == {"kind": "manual"}
    assert client.snapshots.get(frozen.id).id == frozen.id

    snap, branches = instance.branch(3)
    assert snap.status == "ready" and len({b.id for b in branches}) == 3
    assert all(b.status == "ready" and b.refs.snapshot_id == snap.id for b in branches)
    for n, branch in enumerate(branches):
        assert branch.exec(f"echo {n} > note.txt; echo {n} > /tmp/note.txt").exit_code == 0
    for n, branch in enumerate(branches):
        assert branch.exec("cat note.txt /tmp/note.txt").stdout == f"{n}\n{n}\n"
    assert instance.exec("cat note.txt /tmp/note.txt").stdout == "parent\nparent\n"

    listed = {i.id for i in client.instances.list()}
    assert {instance.id, *(b.id for b in branches)} <= listed
    assert [i.id for i in client.instances.list(metadata={"who": "flow"})] != []
    for branch in branches:
        branch.stop()
    instance.stop()
    assert not {instance.id, *(b.id for b in branches)} & {i.id for i in client.instances.list()}

    ops = recorded(host, before)
    for op in ("start", "execute", "execute_stream", "snapshot", "branch", "stop"):
        assert op in ops, (op, ops)
    assert ops.count("stop") >= 4


def test_the_async_client_runs_the_same_flow(server: MorphApiServer, host: HostProcess) -> None:
    before = morph_rows(host)

    async def flow() -> None:
        client = server.client()
        assert [i.id for i in await client.images.alist()] == ["morphvm-minimal"]
        snapshot = await client.snapshots.acreate(image_id="morphvm-minimal")
        instance = await client.instances.astart(snapshot.id)
        assert (await instance.aexec("echo async")).stdout == "async\n"
        seen: list[str] = []
        streamed = await instance.aexec(["sh", "-c", "echo a; echo b"], on_stdout=seen.append)
        assert streamed.stdout == "a\nb\n" and "".join(seen) == "a\nb\n"
        frozen = await instance.asnapshot()
        assert (await client.snapshots.aget(frozen.id)).id == frozen.id
        await instance.aexec("echo base > f")
        _snap, branches = await instance.abranch(3)
        assert len(branches) == 3
        await asyncio.gather(*(b.aexec(f"echo {n} > f") for n, b in enumerate(branches)))
        outputs = await asyncio.gather(*(b.aexec("cat f") for b in branches))
        assert [o.stdout for o in outputs] == ["0\n", "1\n", "2\n"]
        assert (await instance.aexec("cat f")).stdout == "base\n"
        assert {b.id for b in branches} <= {i.id for i in await client.instances.alist()}
        for b in [*branches, instance]:
            await b.astop()
        with pytest.raises(ApiError) as gone:
            await client.instances.aget(instance.id)
        assert gone.value.status_code == 404

    asyncio.run(flow())
    ops = recorded(host, before)
    assert {"start", "execute", "execute_stream", "snapshot", "branch", "stop"} <= set(ops), ops


def test_unknown_ids_are_404_with_a_detail(client: MorphCloudClient, instance: Any) -> None:
    for call in (lambda: client.instances.get("i-nope"), lambda: client.instances.stop("i-nope"),
                 lambda: client.snapshots.get("snapshot_nope"), lambda: client.instances.start("snapshot_nope"),
                 lambda: client.snapshots.create(image_id="no-such-image")):
        with pytest.raises(ApiError) as failed:
            call()
        assert failed.value.status_code == 404 and "not found" in (failed.value.detail or "")
    assert failed.value.error_code == "not_found"
    http = client._http_client
    for method, path in (("POST", "/instance/i-nope/exec"), ("POST", "/instance/i-nope/snapshot"),
                         ("POST", "/instance/i-nope/branch?count=1"), ("POST", "/instance/i-nope/metadata")):
        with pytest.raises(ApiError) as failed:
            http.request(method, path, json={"command": ["true"]} if path.endswith("exec") else {})
        assert failed.value.status_code == 404, path
    assert instance.exec("echo still").stdout == "still\n"


@pytest.mark.parametrize("count", [0, -1, 257])
def test_branch_count_out_of_range_is_422_before_anything_is_made(client: MorphCloudClient, instance: Any,
                                                                  host: HostProcess, count: int) -> None:
    before = morph_rows(host)
    with pytest.raises(ApiError) as failed:
        instance.branch(count)
    assert failed.value.status_code == 422 and "count must be between 1 and 256" in (failed.value.detail or "")
    assert recorded(host, before) == []


def test_a_stopped_instance_disappears(client: MorphCloudClient) -> None:
    instance = client.instances.start(client.snapshots.create().id)
    instance.stop()
    for call in (lambda: client.instances.get(instance.id), lambda: instance.exec("true"),
                 lambda: instance.exec("true", on_stdout=print), lambda: instance.branch(1),
                 instance.snapshot, instance.stop):
        with pytest.raises((ApiError, httpx.HTTPStatusError)) as failed:
            call()
        status = failed.value.status_code if isinstance(failed.value, ApiError) else failed.value.response.status_code
        assert status == 404
    assert instance.id not in {i.id for i in client.instances.list()}


def test_an_instance_stopped_behind_the_api_s_back_disappears(client: MorphCloudClient, host: HostProcess) -> None:
    instance = client.instances.start(client.snapshots.create().id)
    host.stub.CallProvider(host_pb.ProviderCallRequest(source="morph-api", stop=pb.InstanceRef(instance_id=instance.id)))
    assert instance.id in {i.id for i in client.instances.list()}  # the API learns it at the next call
    with pytest.raises(ApiError) as failed:
        instance.exec("true")
    assert failed.value.status_code == 404 and "is stopped" in (failed.value.detail or "")
    assert instance.id not in {i.id for i in client.instances.list()}


def test_a_wrong_or_missing_key_is_401(server: MorphApiServer) -> None:
    wrong = server.client(key="not-the-key")
    for call in (wrong.images.list, wrong.instances.list, wrong.snapshots.create):
        with pytest.raises(ApiError) as failed:
            call()
        assert failed.value.status_code == 401 and failed.value.error_code == "unauthorized"
    assert httpx.get(f"{server.base_url}/instance").status_code == 401
    assert httpx.get(f"{server.base_url}/instance", headers={"Authorization": f"Basic {server.key}"}).status_code == 401


def test_what_cannot_work_here_is_501_and_says_why(client: MorphCloudClient, instance: Any) -> None:
    for call, why in ((instance.pause, "paused"), (instance.resume, "paused"), (instance.reboot, "rebooted"),
                      (lambda: instance.expose_http_service("web", 8080), "network"),
                      (lambda: instance.hide_http_service("web"), "network"), (instance.ssh_key, "SSH"),
                      (lambda: client._http_client.get("/user/api-key"), "one API key")):
        with pytest.raises(ApiError) as failed:
            call()
        assert failed.value.status_code == 501 and why in (failed.value.detail or ""), failed.value.detail
    assert instance.exec("echo alive").stdout == "alive\n"


def test_bad_bodies_are_422(client: MorphCloudClient, instance: Any) -> None:
    http = client._http_client
    for method, path, body in (("POST", f"/instance/{instance.id}/exec", {"command": "not a list"}),
                               ("POST", f"/instance/{instance.id}/exec", {"command": []}),
                               ("POST", "/instance", {}),
                               ("POST", "/snapshot", {"memory": 10}),
                               ("POST", "/snapshot", {"ttl_seconds": 0}),
                               ("POST", f"/instance/{instance.id}/ttl", {"ttl_seconds": 60, "ttl_action": "pause"}),
                               ("POST", f"/instance/{instance.id}/metadata", {"k": 1})):
        with pytest.raises(ApiError) as failed:
            http.request(method, path, json=body)
        assert failed.value.status_code == 422, (path, body, failed.value.response_body)
    with pytest.raises(ApiError) as failed:
        instance.exec(["echo", "a\0b"])
    assert failed.value.status_code == 422 and "NUL" in (failed.value.detail or "")
    with pytest.raises(ApiError) as failed:  # said to be JSON, and not
        http.post(f"/instance/{instance.id}/exec", content=b"\xff\xfe not json")
    assert failed.value.status_code == 400 and "parsing the body" in (failed.value.detail or "")
    # Not said to be JSON, and not UTF-8 either: FastAPI's own handler would fail on the bytes (a 500).
    raw = httpx.post(f"{client._http_client.base_url}instance/{instance.id}/exec", content=b"\xff\xfe not json",
                     headers={"Authorization": client._http_client.headers["Authorization"]})
    assert raw.status_code == 422 and isinstance(raw.json()["detail"], list)


def test_metadata_digest_and_pagination(client: MorphCloudClient) -> None:
    first = client.snapshots.create(digest="flow-digest", metadata={"team": "a"})
    assert client.snapshots.create(digest="flow-digest").id == first.id
    assert [s.id for s in client.snapshots.list(digest="flow-digest")] == [first.id]
    first.set_metadata({"team": "b", "x": "1"})
    assert client.snapshots.get(first.id).metadata == {"team": "b", "x": "1"}
    assert [s.id for s in client.snapshots.list(metadata={"team": "b"})] == [first.id]
    assert client.snapshots.list(metadata={"team": "a"}) == [] or first.id not in {
        s.id for s in client.snapshots.list(metadata={"team": "a"})}
    booted = client.instances.boot(first.id, memory=256, metadata={"page": "yes"})
    try:
        assert booted.spec.memory == 256
        booted.set_metadata({"page": "yes", "more": "1"})
        assert client.instances.get(booted.id).metadata == {"page": "yes", "more": "1"}
        page = client.instances.list_paginated(page=1, limit=1, metadata={"page": "yes"})
        assert [i.id for i in page.instances] == [booted.id] and page.total == 1 and not page.has_next
        assert client.snapshots.list_paginated(page=1, limit=50, digest="flow-digest").total == 1
    finally:
        booted.stop()
    first.delete()
    with pytest.raises(ApiError):
        client.snapshots.get(first.id)


def test_cleanup_stops_the_instances_of_a_snapshot(client: MorphCloudClient) -> None:
    snap = client.snapshots.create()
    made = {client.instances.start(snap.id).id for _ in range(2)}
    keep = client.instances.start(client.snapshots.create().id)
    try:
        result = client.instances.cleanup(snapshot_pattern=snap.id)
        assert result["success"] is True and result["processed"] == 2 and result["failed"] == 0, result
        left = {i.id for i in client.instances.list()}
        assert not made & left and keep.id in left
    finally:
        keep.stop()


def test_ttls_are_absolute_and_stop_the_instance(client: MorphCloudClient, host: HostProcess) -> None:
    before = int(time.time())
    instance = client.instances.start(client.snapshots.create().id, ttl_seconds=600)
    after = int(time.time())
    assert instance.ttl.ttl_seconds == 600 and before <= instance.ttl.ttl_expire_at - 600 <= after
    instance.set_ttl(1)
    assert instance.ttl.ttl_expire_at <= int(time.time()) + 1
    wait_for(lambda: instance.id not in {i.id for i in client.instances.list()}, 30,
             "the instance is stopped when its ttl runs out")
    with pytest.raises(ApiError) as gone:
        client.instances.get(instance.id)
    assert gone.value.status_code == 404


def test_wake_on_snapshot_ttl_and_a_base_url_ending_in_a_slash(server: MorphApiServer, client: MorphCloudClient,
                                                               instance: Any) -> None:
    instance.set_wake_on(wake_on_ssh=True)
    assert client.instances.get(instance.id).wake_on.wake_on_ssh is True
    snap = client.snapshots.create()
    before = int(time.time())
    snap.set_ttl(3600)
    assert before + 3600 <= client.snapshots.get(snap.id).ttl.ttl_expire_at <= int(time.time()) + 3600
    snap.set_ttl(None)
    assert client.snapshots.get(snap.id).ttl.ttl_expire_at is None
    # The SDK's sync streamed exec joins base_url + "/instance/...": a base URL ending in "/" sends "//".
    slashed = MorphCloudClient(api_key=server.key, base_url=server.base_url + "/")
    seen: list[str] = []
    again = slashed.instances.get(instance.id)
    assert again.exec("echo via-slash", on_stdout=seen.append).stdout == "via-slash\n" and seen == ["via-slash\n"]


def test_what_the_server_made_is_stopped_when_it_exits(host: HostProcess) -> None:
    """Its records die with it, so nothing else would own its instances: on SIGTERM it stops them."""
    second = MorphApiServer(host.home, host=host.address)
    try:
        client = second.client()
        made = client.instances.start(client.snapshots.create().id)
        frozen = made.snapshot()
    finally:
        assert second.stop() in (0, 130)
    gone = {}
    for member in (made.id, frozen.id):
        with pytest.raises(grpc.RpcError) as info:
            host.stub.CallProvider(host_pb.ProviderCallRequest(source="morph-api", stop=pb.InstanceRef(instance_id=member)))
        gone[member] = (info.value.code(), info.value.details())
    assert gone[made.id] == (grpc.StatusCode.FAILED_PRECONDITION, f"instance {made.id} is stopped: stopped by Stop")
    assert "released by Stop" in gone[frozen.id][1], gone


def test_an_embedded_host_records_into_duckdb(tmp_path: Path) -> None:
    """No host runs in this home: the API embeds one, and its rows are in the DuckDB file after it stops."""
    import duckdb

    server = MorphApiServer(tmp_path / "embedded")
    try:
        client = server.client()
        instance = client.instances.start(client.snapshots.create().id)
        assert instance.exec("echo embedded").stdout == "embedded\n"
        instance.stop()
    finally:
        assert server.stop() in (0, 130)
    with duckdb.connect(str(tmp_path / "embedded" / "world.duckdb"), read_only=True) as db:
        ops = [row[0] for row in db.execute(
            "SELECT operation FROM provider_invocations WHERE provider_id = 'morph' ORDER BY invoked_at").fetchall()]
    # Resolving the snapshot's image is a call of its own (list-images), recorded like every provider call.
    assert [op for op in ops if op != "list-images"][:3] == ["start", "execute", "stop"], ops
    assert "list-images" in ops, ops


def test_the_api_server_refuses_a_bad_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MORPH_API_KEY", raising=False)
    wide = cli(tmp_path, "api", "serve", "morph", "--listen", "0.0.0.0:8780", "--api-key", "k")
    assert wide.returncode == 2 and "plain HTTP" in wide.stderr
    keyless = cli(tmp_path, "api", "serve", "morph")
    assert keyless.returncode == 2 and "MORPH_API_KEY" in keyless.stderr


def test_an_image_built_by_worldrt_is_a_morph_image(host: HostProcess, client: MorphCloudClient) -> None:
    """Morph's image_id names worldrt's images: one built on the host is listed and started from."""
    events = list(host.stub.BuildImage(host_pb.HostBuildImageRequest(build=pb.BuildImageRequest(
        name="greeting", files=[pb.FileEntry(path="hello.txt", data=b"hello from an image\n")]))))
    built = events[-1].image
    images = {i.id: i for i in client.images.list()}
    assert images["greeting"].disk_size == built.size_bytes
    assert next(iter(images)) == "morphvm-minimal"
    instance = client.instances.start(client.snapshots.create(image_id="greeting").id)
    try:
        assert instance.exec("cat /opt/python-env/files/hello.txt").stdout == "hello from an image\n"
        plain = client.instances.start(client.snapshots.create(image_id="morphvm-minimal").id)
        try:
            assert plain.exec("test -e /opt/python-env/files/hello.txt; echo $?").stdout == "1\n"
        finally:
            plain.stop()
    finally:
        instance.stop()
