"""The component runtime with small hand-written WAT components: loading and its cache, every kind of bad
input, limits, WASI confinement, and provider calls (errors included) against a real morph daemon."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from tests.support import ROOT, wait_for
from worldrt.host.routing import DirectRouter
from worldrt.host.runtime import (
    OPERATIONS,
    CallContext,
    ComponentError,
    ComponentRuntime,
    ComponentTimeout,
    ComponentTrap,
    GuestError,
    Limits,
    Operation,
    Router,
    from_wit,
    inspect_component,
    to_wit,
)
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

WAT = ROOT / "tests" / "fixtures" / "wat"
EXAMPLES = ROOT / "components" / "examples"
TINY = EXAMPLES / "tiny.wat"
STOP = EXAMPLES / "stop.wat"


@pytest.fixture(scope="module")
def runtime(morph: ProviderDaemon, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComponentRuntime]:
    router = DirectRouter({"generator": morph.channel}, timeout_s=30)
    with ComponentRuntime(router, cache_dir=tmp_path_factory.mktemp("cache")) as rt:
        yield rt


# the value mapping ------------------------------------------------------------------------------

def _filled(message_type: type[Message]) -> Message:
    """A message with every field set to something other than its default."""
    message = message_type()
    for field in message.DESCRIPTOR.fields:
        name = field.name
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key, value = (field.message_type.fields_by_name[n] for n in ("key", "value"))
            keys = ("b", "a") if key.type == key.TYPE_STRING else (9, 3)
            values = (2.5, 1.5) if value.type == value.TYPE_DOUBLE else ("two", "one")
            getattr(message, name).update(zip(keys, values, strict=True))
        elif field.type == field.TYPE_MESSAGE:
            target = getattr(message, name)
            sub = _filled(GetMessageClass(field.message_type))
            (target.add() if field.is_repeated else target).CopyFrom(sub)
        elif field.type == field.TYPE_ENUM:
            value = field.enum_type.values[-1].number
            getattr(message, name).append(value) if field.is_repeated else setattr(message, name, value)
        else:
            sample = {field.TYPE_STRING: f"{name}-x", field.TYPE_BOOL: True, field.TYPE_DOUBLE: 0.25,
                      field.TYPE_BYTES: b"\x00\xff" + name.encode()}.get(field.type, 7)
            getattr(message, name).extend([sample, sample]) if field.is_repeated else setattr(message, name, sample)
    return message


@pytest.mark.pure
@pytest.mark.parametrize("message_type", sorted({t for op in OPERATIONS.values() for t in (op.request, op.reply)},
                                                key=lambda t: t.DESCRIPTOR.name))
def test_every_message_of_the_world_survives_the_trip_through_wit_values(message_type: type[Message]) -> None:
    message = _filled(message_type)
    assert message != message_type()
    assert from_wit(to_wit(message), message_type) == message


@pytest.mark.pure
def test_enum_cases_and_maps_are_spelled_the_wit_way() -> None:
    record = to_wit(pb.Instance(instance_id="i-1", status=pb.STOPPED, metadata={"z": "1", "a": "2"}))
    assert record.status == "stopped"
    assert record.metadata == [("a", "2"), ("z", "1")]
    assert getattr(record, "created-at") is None
    assert to_wit(pb.SnapshotRef(kind=pb.MEMORY_AND_DISK)).kind == "memory-and-disk"


# loading ----------------------------------------------------------------------------------------

@pytest.mark.daemons
def test_tiny_component_runs_and_its_log_reaches_the_host(runtime: ComponentRuntime) -> None:
    tiny = runtime.load(TINY)
    assert tiny.imports == ("worldrt:verse/log@0.1.0",) and tiny.exports == ("run",)
    logged: list[tuple[str, str]] = []
    result = runtime.invoke_detailed(tiny, 7, "hello verse", on_log=lambda level, msg: logged.append((level, msg)))
    assert result.value == "hello verse"
    assert logged == [("info", "hello verse")]
    assert 0 < result.instantiate_us < 50_000 and result.provider_calls == 0


@pytest.mark.daemons
def test_compiled_components_are_cached_by_content_hash(morph: ProviderDaemon, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    source = tmp_path / "tiny.wat"
    source.write_text(TINY.read_text())
    with ComponentRuntime(DirectRouter({}), cache_dir=cache) as rt:
        first, second = rt.load(source), rt.load(source)
        assert (first.cached, second.cached) == (False, True)
        assert first.digest == second.digest and len(list(cache.glob("*.cwasm"))) == 1
        assert rt.invoke(second, 1, "from the cache") == "from the cache"

        source.write_text(TINY.read_text() + "\n;; another build\n")
        assert rt.load(source).cached  # same binary, same entry: the hash is of the wasm, not the text

        entry = next(cache.glob("*.cwasm"))
        torn = entry.with_suffix(".torn")
        torn.write_bytes(b"not a serialized component")
        torn.replace(entry)
        again = rt.load(source)
        assert not again.cached and rt.invoke(again, 1, "recompiled") == "recompiled"
        assert rt.load(source).cached


@pytest.mark.daemons
@pytest.mark.parametrize("content, message", [
    (b"hello, this is text", "is not WebAssembly: no \\0asm header and not WAT text"),
    (bytes(range(256)) * 4, "is not WebAssembly"),
    (b"(component (this is not wat", "is not valid WAT"),
    (b"\0asm\x0d\x00\x01\x00garbage", "does not compile as a component"),
    (b"\0asm\x01", "is truncated"),
])
def test_a_file_that_is_not_a_component_is_refused_in_one_line(runtime: ComponentRuntime, tmp_path: Path,
                                                              content: bytes, message: str) -> None:
    path = tmp_path / "bad.wasm"
    path.write_bytes(content)
    with pytest.raises(ComponentError) as info:
        runtime.load(path)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.daemons
def test_missing_file(runtime: ComponentRuntime, tmp_path: Path) -> None:
    with pytest.raises(ComponentError, match="cannot read .*nope.wasm: No such file"):
        runtime.load(tmp_path / "nope.wasm")


@pytest.mark.daemons
@pytest.mark.parametrize("fixture, message", [
    ("core_module.wat", "is a core WebAssembly module, not a component"),
    ("unknown_import.wat", "imports acme:weather/forecast@1.0.0, which this host does not provide"),
    ("wasi_http.wat", "imports wasi:cli/environment@0.3.0 and wasi:http/outgoing-handler@0.2.10, which this host "
                      "does not provide"),
    ("wrong_import_type.wat", "imports generator.start with a type this host does not serve: its parameter is "
                              "string, expected a record for worldrt.v1.StartRequest"),
    ("no_run.wat", "has no export `run` (it exports main)"),
    ("wrong_run.wat", "its export `run` is func(n: u32) -> u32, expected func(verse-id: u64, args: string)"),
])
def test_a_component_that_does_not_fit_the_world_is_refused_before_it_runs(
        runtime: ComponentRuntime, fixture: str, message: str) -> None:
    with pytest.raises(ComponentError) as info:
        runtime.load(WAT / fixture)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.daemons
def test_every_wasi_import_the_host_lacks_is_named_with_what_to_do(runtime: ComponentRuntime) -> None:
    with pytest.raises(ComponentError) as info:
        runtime.load(WAT / "wasi_http.wat")
    message = str(info.value)
    assert "wasi:random" not in message  # 0.2.3 is served: wasmtime matches any 0.2.x
    assert "wasi:cli is served at version 0.2.x only, not 0.3.0: build for WASI 0.2 (wasm32-wasip2)" in message
    assert "no wasi:http; a componentize-js or jco componentize build leaves it out with " \
           "`--disable http fetch-event`" in message
    assert inspect_component(WAT / "wasi_http.wat", cache_dir=None).problem == message.replace(
        str(WAT / "wasi_http.wat"), "wasi_http.wat", 1)


@pytest.mark.daemons
def test_an_instantiation_error_keeps_wasmtimes_cause_and_no_memory_guess(runtime: ComponentRuntime) -> None:
    component = runtime.load(WAT / "wasi_missing_func.wat")
    with pytest.raises(ComponentError) as info:
        runtime.invoke(component, 1, "")
    assert str(info.value) == (
        "wasi_missing_func could not be instantiated: component imports instance `wasi:random/random@0.2.0`, but a "
        "matching implementation was not found in the linker: instance export `get-random-truth` has the wrong "
        "type: function implementation is missing")


# limits -----------------------------------------------------------------------------------------

@pytest.mark.daemons
def test_an_endless_loop_is_stopped_at_its_deadline_and_the_host_goes_on(runtime: ComponentRuntime) -> None:
    looping = runtime.load(WAT / "loop.wat")
    started = time.monotonic()
    with pytest.raises(ComponentTimeout, match=r"loop ran past its deadline of 0.5 s and was stopped"):
        runtime.invoke(looping, 1, "", limits=Limits(timeout_s=0.5))
    assert 0.45 < time.monotonic() - started < 3
    assert runtime.invoke(runtime.load(TINY), 1, "still here") == "still here"


def _epoch_wakes() -> int:
    """Times every deadline clock ("worldrt-epoch") of this process went to sleep so far."""
    total = 0
    for thread in threading.enumerate():
        if thread.name == "worldrt-epoch" and thread.native_id is not None:
            status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
            total += next(int(line.split()[1]) for line in status.splitlines()
                          if line.startswith("voluntary_ctxt_switches:"))
    return total


@pytest.mark.daemons
def test_the_deadline_clock_sleeps_while_nothing_runs_and_wakes_for_the_next_invocation(tmp_path: Path) -> None:
    with ComponentRuntime(DirectRouter({}), cache_dir=tmp_path) as rt:
        assert rt.invoke(rt.load(TINY), 1, "x") == "x"
        # Idle, the clock does not wake (it ticked every 10 ms before): three windows in a row without a switch.
        windows = [_epoch_wakes()]

        def still() -> bool:
            windows.append(_epoch_wakes())
            return len(windows) > 3 and len(set(windows[-4:])) == 1
        wait_for(still, 20, "the deadline clocks stopped waking while no invocation ran", interval_s=0.1)
        with pytest.raises(ComponentTimeout, match=r"loop ran past its deadline of 0.5 s and was stopped"):
            rt.invoke(rt.load(WAT / "loop.wat"), 1, "", limits=Limits(timeout_s=0.5))
        assert rt.invoke(rt.load(TINY), 1, "after") == "after"


@pytest.mark.daemons
def test_unbounded_allocation_hits_the_memory_cap(runtime: ComponentRuntime) -> None:
    growing = runtime.load(WAT / "grow.wat")
    with pytest.raises(ComponentTrap, match=r"grow trapped: .*unreachable.* run out of its 16 MiB of memory"):
        runtime.invoke(growing, 1, "", limits=Limits(memory_mb=16))
    assert runtime.invoke(runtime.load(TINY), 1, "still here") == "still here"


@pytest.mark.daemons
def test_a_trap_is_reported_with_its_cause(runtime: ComponentRuntime) -> None:
    with pytest.raises(ComponentTrap) as info:
        runtime.invoke(runtime.load(WAT / "trap.wat"), 1, "")
    assert str(info.value) == "trap trapped: wasm trap: integer divide by zero"


@pytest.mark.daemons
def test_wasi_gives_no_directories_and_no_network(runtime: ComponentRuntime) -> None:
    # lookup=1:20 is err(permanent-resolver-failure): name lookups (and so sockets) are not allowed.
    assert runtime.invoke(runtime.load(WAT / "probe.wat"), 1, "") == "preopens=0 lookup=1:20"


@pytest.mark.daemons
def test_component_output_is_shown_or_captured(runtime: ComponentRuntime, capfd: pytest.CaptureFixture[str]) -> None:
    printing = runtime.load(WAT / "print.wat")
    assert runtime.invoke(printing, 1, "a line from the component\n") == "printed"
    out, err = capfd.readouterr()
    assert out == err == "a line from the component\n"

    seen: list[tuple[str, bytes]] = []
    runtime.invoke(printing, 1, "captured\n", on_output=lambda stream, data: seen.append((stream, data)))
    assert sorted(seen) == [("stderr", b"captured\n"), ("stdout", b"captured\n")]
    assert capfd.readouterr() == ("", "")


# provider calls ---------------------------------------------------------------------------------

@pytest.mark.daemons
def test_a_provider_error_reaches_the_guest_as_an_err(runtime: ComponentRuntime, morph: ProviderDaemon) -> None:
    stop = runtime.load(STOP)
    assert stop.imports == ("worldrt:verse/generator@0.1.0",)
    with pytest.raises(GuestError) as info:
        runtime.invoke(stop, 1, "i-does-not-exist")
    assert info.value.message == "NOT_FOUND: no instance 'i-does-not-exist' on morph (it never existed here)"

    instance = morph.stub.Start(pb.StartRequest()).instance_id
    assert runtime.invoke(stop, 1, instance) == instance
    with pytest.raises(GuestError, match=rf"^FAILED_PRECONDITION: instance {instance} is stopped"):
        runtime.invoke(stop, 1, instance)


@pytest.mark.pure
def test_an_unreachable_provider_is_an_err_not_a_trap(tmp_path: Path) -> None:
    router = DirectRouter({"generator": f"unix:{tmp_path}/nobody.sock"}, timeout_s=2)
    with ComponentRuntime(router, cache_dir=None) as rt:
        with pytest.raises(GuestError, match=r"^UNAVAILABLE: "):
            rt.invoke(rt.load(STOP), 1, "i-1")
    router.close()


@pytest.mark.pure
def test_an_interface_with_no_provider_is_an_err() -> None:
    with ComponentRuntime(DirectRouter({}), cache_dir=None) as rt:
        with pytest.raises(GuestError, match=r"^FAILED_PRECONDITION: no provider is set for interface generator$"):
            rt.invoke(rt.load(STOP), 1, "i-1")


@pytest.mark.daemons
def test_router_metadata_names_the_verse_and_the_component(morph: ProviderDaemon, tmp_path: Path) -> None:
    seen: list[tuple[str, str, int, str]] = []

    class Recording(DirectRouter):
        def call(self, op, request, context):
            seen.append((op.interface, op.name, context.verse_id, context.source))
            return super().call(op, request, context)

    with ComponentRuntime(Recording({"generator": morph.channel}), cache_dir=None) as rt:
        with pytest.raises(GuestError):
            rt.invoke(rt.load(STOP), 1069, "i-x")
    assert seen == [("generator", "stop", 1069, "stop")]


@pytest.mark.daemons
def test_invocations_on_threads_keep_their_own_calls(runtime: ComponentRuntime) -> None:
    tiny = runtime.load(TINY)
    logs: dict[int, list[str]] = {n: [] for n in range(4)}
    results: dict[int, list[str]] = {n: [] for n in range(4)}

    def work(n: int) -> None:
        for i in range(50):
            results[n].append(runtime.invoke(tiny, n, f"{n}:{i}", on_log=lambda _l, m, n=n: logs[n].append(m)))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n in range(4):
        assert results[n] == logs[n] == [f"{n}:{i}" for i in range(50)]


@pytest.mark.pure
def test_inspect_lists_imports_and_exports_with_their_types(tmp_path: Path) -> None:
    info = inspect_component(STOP, cache_dir=tmp_path)
    assert info.problem is None and info.size_bytes > 0 and len(info.digest) == 64
    assert info.imports == {"worldrt:verse/generator@0.1.0": {
        "stop": "func(request: instance-ref) -> result<instance, provider-error>"}}
    assert info.exports == {"run": "func(verse-id: u64, args: string) -> result<string, string>"}
    refused = inspect_component(WAT / "unknown_import.wat", cache_dir=tmp_path)
    assert "acme:weather/forecast@1.0.0" in refused.imports and "does not provide" in refused.problem
    with pytest.raises(ComponentError, match="core WebAssembly module"):
        inspect_component(WAT / "core_module.wat", cache_dir=tmp_path)


@pytest.mark.daemons
def test_grpc_errors_a_router_lets_through_are_mapped_too(morph: ProviderDaemon) -> None:
    class Unwrapped(Router):
        """Calls the stub and lets grpc.RpcError out, as a router may."""

        def call(self, op: Operation, request: Message, context: CallContext) -> Message:
            return getattr(morph.stub, op.rpc)(request, timeout=10)

    with ComponentRuntime(Unwrapped(), cache_dir=None) as rt:
        with pytest.raises(GuestError, match="^NOT_FOUND: no instance 'i-raw' on morph"):
            rt.invoke(rt.load(STOP), 1, "i-raw")


@pytest.mark.pure
def test_a_router_that_breaks_gives_the_guest_an_internal_err() -> None:
    class Broken(Router):
        def call(self, op: Operation, request: Message, context: CallContext) -> Message:
            raise KeyError("no such link table")

    with ComponentRuntime(Broken(), cache_dir=None) as rt:
        with pytest.raises(GuestError, match=r"^INTERNAL: the host's router failed on generator.stop: KeyError"):
            rt.invoke(rt.load(STOP), 1, "i-1")
