"""The official modal SDK (1.6) against `worldrt api serve modal`, sync and async, through a real host:
sandboxes are instances of a real modal daemon, every call goes over the API's generator link and is
recorded, and what cannot work here is refused with the SDK's own errors and a reason."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import modal
import modal.client
import pytest
from modal.exception import AuthError, ImageBuildError, NotFoundError, SandboxTimeoutError, UnimplementedError
from modal_proto import api_pb2, api_pb2_grpc
from modal_proto import task_command_router_pb2 as tcr
from modal_proto import task_command_router_pb2_grpc as tcr_grpc

from tests.support import HostProcess, ModalApiServer
from worldrt.v1 import host_pb

pytestmark = pytest.mark.daemons


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    running = HostProcess(tmp_path_factory.mktemp("modal-api-host"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def server(host: HostProcess) -> Iterator[ModalApiServer]:
    api = ModalApiServer(host.home, host=host.address)
    yield api
    assert api.stop() in (0, 130)
    assert "Traceback" not in api.log(), api.log()[-4000:]


@pytest.fixture(scope="module")
def sdk(server: ModalApiServer) -> Iterator[None]:
    """The modal SDK of this process pointed at the server, as a user's environment would."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in server.client_env().items():
            patch.setenv(name, value)
        modal.client._Client._client_from_env = None
        yield
        modal.client._Client._client_from_env = None


@pytest.fixture(scope="module")
def app(sdk: None) -> modal.App:
    return modal.App.lookup("worldrt-tests", create_if_missing=True)


def modal_rows(host: HostProcess) -> list[str]:
    rows = host.stub.RecentInvocations(host_pb.RecentInvocationsRequest(limit=1000)).invocations
    return [r.operation for r in reversed(rows) if r.provider_id == "modal"]


def test_a_sandbox_lives_until_terminated_and_is_recorded(app: modal.App, host: HostProcess) -> None:
    before = len(modal_rows(host))
    sb = modal.Sandbox.create(app=app, image=modal.Image.debian_slim(), name="lifecycle")
    assert not sb.object_id.startswith("sb-") or len(sb.object_id) != 25  # never a V1 id
    assert sb.poll() is None
    sb.set_tags({"team": "worldrt", "kind": "test"})
    assert sb.get_tags() == {"team": "worldrt", "kind": "test"}
    assert sb.object_id in [s.object_id for s in modal.Sandbox.list(app_id=app.app_id)]
    assert [s.object_id for s in modal.Sandbox.list(app_id=app.app_id, tags={"team": "worldrt"})] == [sb.object_id]
    assert list(modal.Sandbox.list(app_id=app.app_id, tags={"team": "other"})) == []
    assert modal.Sandbox.from_name("worldrt-tests", "lifecycle").object_id == sb.object_id
    assert modal.Sandbox.from_id(sb.object_id).poll() is None
    assert sb.tunnels() == {}
    sb.terminate()
    sb.wait(raise_on_termination=False)
    assert sb.returncode == 137
    assert sb.object_id not in [s.object_id for s in modal.Sandbox.list(app_id=app.app_id)]
    with pytest.raises(NotFoundError):
        modal.Sandbox.from_name("worldrt-tests", "lifecycle")
    operations = modal_rows(host)[before:]
    assert operations == ["start", "stop"], operations


def test_the_async_interface(app: modal.App) -> None:
    async def flow() -> tuple[int | None, int | None]:
        sb = await modal.Sandbox.create.aio(app=app, image=modal.Image.debian_slim())
        first = await sb.poll.aio()
        await sb.terminate.aio()
        await sb.wait.aio(raise_on_termination=False)
        return first, sb.returncode

    assert asyncio.run(flow()) == (None, 137)


def test_a_sandbox_ends_at_its_timeout(app: modal.App) -> None:
    sb = modal.Sandbox.create(app=app, image=modal.Image.debian_slim(), timeout=2)
    with pytest.raises(SandboxTimeoutError):
        sb.wait()
    assert sb.returncode == 124


@pytest.mark.parametrize(("image", "step"), [
    (lambda: modal.Image.debian_slim().apt_install("curl"), "RUN apt-get install -y curl"),
    (lambda: modal.Image.debian_slim().run_commands("echo hi > /x"), "RUN echo hi > /x"),
    (lambda: modal.Image.from_registry("ubuntu:22.04"), "FROM ubuntu:22.04"),
    (lambda: modal.Image.debian_slim().pip_install("six", index_url="https://example.org/simple"),
     "--index-url"),
    (lambda: modal.Image.debian_slim().env({"A": "1"}), "ENV"),
])
def test_recipes_that_cannot_be_built_here_fail_the_build_naming_the_step(app: modal.App, image: object,
                                                                          step: str) -> None:
    with pytest.raises(ImageBuildError) as failed:
        modal.Sandbox.create(app=app, image=image())  # type: ignore[operator]
    assert step in str(failed.value) and "cannot be built here" in str(failed.value), str(failed.value)


def test_what_cannot_work_here_is_refused_with_a_reason(app: modal.App) -> None:
    with pytest.raises(UnimplementedError, match="GPUs cannot work .*: this machine has no GPU"):
        modal.Sandbox.create(app=app, image=modal.Image.debian_slim(), gpu="T4")
    with pytest.raises(UnimplementedError, match="no network"):
        modal.Sandbox.create(app=app, image=modal.Image.debian_slim(), encrypted_ports=[8080])
    with pytest.raises(UnimplementedError, match="volumes do not exist here"):
        modal.Volume.from_name("data", create_if_missing=True).hydrate()
    with pytest.raises(UnimplementedError, match="functions and classes run on Modal's cloud"):
        modal.Function.from_name("some-app", "f").hydrate()
    with pytest.raises(UnimplementedError, match="queues and dicts"):
        modal.Queue.from_name("q", create_if_missing=True).hydrate()


def test_a_wrong_token_is_refused(server: ModalApiServer) -> None:
    done = server.run_script("import modal; modal.App.lookup('x', create_if_missing=True)",
                             token=("ak-test", "as-wrong"))
    assert done.returncode != 0 and "AuthError" in done.stderr and "token pair" in done.stderr, done.stderr[-2000:]
    assert AuthError  # the SDK's own exception type for UNAUTHENTICATED


def test_the_router_takes_only_its_own_jwts(server: ModalApiServer, app: modal.App) -> None:
    sb = modal.Sandbox.create(app=app, image=modal.Image.debian_slim())
    other = modal.Sandbox.create(app=app, image=modal.Image.debian_slim())
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            control = api_pb2_grpc.ModalClientStub(channel)
            pair = (("x-modal-token-id", server.token[0]), ("x-modal-token-secret", server.token[1]))
            with pytest.raises(grpc.RpcError) as no_token:
                control.SandboxWaitV2(api_pb2.SandboxWaitRequest(sandbox_id=sb.object_id))
            assert no_token.value.code() == grpc.StatusCode.UNAUTHENTICATED
            access = control.SandboxGetCommandRouterAccess(
                api_pb2.SandboxGetCommandRouterAccessRequest(sandbox_id=sb.object_id), metadata=pair)
            task = control.SandboxGetTaskIdV2(api_pb2.SandboxGetTaskIdRequest(sandbox_id=sb.object_id),
                                              metadata=pair).task_id
            other_task = control.SandboxGetTaskIdV2(api_pb2.SandboxGetTaskIdRequest(sandbox_id=other.object_id),
                                                    metadata=pair).task_id
            router = tcr_grpc.TaskCommandRouterStub(channel)
            ready = tcr.SandboxWaitUntilReadyTcrRequest(task_id=task, timeout=5)
            assert router.SandboxWaitUntilReady(ready, metadata=[("authorization", f"Bearer {access.jwt}")]).ready_at
            header, body, _signature = access.jwt.split(".")
            for forged in (f"{header}.{body}.AAAA", f"{header}.{body}.", "not-a-jwt", access.jwt + "x"):
                with pytest.raises(grpc.RpcError) as refused:
                    router.SandboxWaitUntilReady(ready, metadata=[("authorization", f"Bearer {forged}")])
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as elsewhere:
                router.SandboxWaitUntilReady(tcr.SandboxWaitUntilReadyTcrRequest(task_id=other_task, timeout=5),
                                             metadata=[("authorization", f"Bearer {access.jwt}")])
            assert elsewhere.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        sb.terminate()
        other.terminate()


def test_print_profile_points_the_sdk_at_the_server(server: ModalApiServer, app: modal.App) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "worldrt.host.cli", "api", "serve", "modal", "--listen",
                           f"127.0.0.1:{server.port}", "--print-profile"], env=server.server_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    toml = server.home / "modal-profile.toml"
    toml.write_text(done.stdout)
    ran = server.run_script("import modal; print(modal.App.lookup('via-profile', create_if_missing=True).app_id)",
                            env={"MODAL_CONFIG_PATH": str(toml), "MODAL_SERVER_URL": None, "MODAL_TOKEN_ID": None,
                                 "MODAL_TOKEN_SECRET": None})
    assert ran.returncode == 0 and ran.stdout.startswith("ap-"), ran.stderr[-2000:]
