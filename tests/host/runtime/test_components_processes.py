"""Components and processes (worldrt:verse@0.2.0): the processes example, built with componentize-py, runs
long-lived processes in a real morph instance through the host's imports: stdin written by offset (a retry
not applied twice), output pulled by offset within each read's bounds (bytes per read, the wait for the
first byte), wait, signal, timeout and list; what the provider refuses reaches it as its err. A component
of 0.1.0 cannot import the process functions. The JavaScript example (componentize-js) does the same
basic calls."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from wasmtime.component import ComponentInstanceType

from tests.support import CACHE, built_example, cli
from worldrt.host.routing import DirectRouter
from worldrt.host.runtime import (
    ComponentError,
    ComponentRuntime,
    GuestError,
    LoadedComponent,
    inspect_component,
    wit_interface,
)
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

pytestmark = pytest.mark.daemons
MIB = 1024 * 1024
PROCESS_FUNCTIONS = {"start-process", "read-process-output", "write-process-stdin", "wait-process",
                     "signal-process", "list-processes"}


@pytest.fixture(scope="module")
def runtime(morph: ProviderDaemon) -> Iterator[ComponentRuntime]:
    with ComponentRuntime(DirectRouter({"generator": morph.channel}, timeout_s=60),
                          cache_dir=CACHE / "components") as rt:
        yield rt


@pytest.fixture(scope="module")
def processes(runtime: ComponentRuntime) -> LoadedComponent:
    return runtime.load(built_example("processes"))


def run(runtime: ComponentRuntime, component: LoadedComponent, instance: str, **spec: Any) -> Any:
    return json.loads(runtime.invoke(component, 1, json.dumps({"instance_id": instance, **spec})))


def test_a_guest_feeds_stdin_by_offset_pulls_output_and_waits(runtime: ComponentRuntime, processes: LoadedComponent,
                                                              instance: str, stub: Any) -> None:
    pieces = ["hello ", "from ", "the guest\n"]
    out = run(runtime, processes, instance, argv=["sh", "-c", "cat; echo done >&2; exit 3"], stdin=pieces,
              retry_first=True, tag="cat-1", max_bytes=4)
    # The first piece was written twice at offset 0 and applied once.
    assert out["stdin_offset"] == len("".join(pieces))
    assert out["stdout"] == "hello from the guest\n" and out["stderr"] == "done\n"
    assert (out["state"], out["exit_code"], out["signal"], out["output_ended"]) == ("exited", 3, 0, True)
    assert out["offsets"] == {"stdout": 21, "stderr": 5}
    # Four bytes a read at most: the 26 bytes took at least seven reads.
    assert max(out["reads"]) <= 4 and sum(out["reads"]) == 26 and len(out["reads"]) >= 7
    assert out["listed"] == [["cat-1", "exited"]]
    # The process is the provider's: the daemon answers for it too.
    info = stub.WaitProcess(pb.WaitProcessRequest(instance_id=instance, process_id=out["process_id"]))
    assert (info.state, info.exit_code, info.tag) == (pb.PROCESS_EXITED, 3, "cat-1")


def test_a_read_waits_for_the_first_output_and_no_longer(runtime: ComponentRuntime, processes: LoadedComponent,
                                                         instance: str) -> None:
    out = run(runtime, processes, instance, argv=["sh", "-c", "sleep 1; echo late"], wait_ms=30_000)
    assert out["stdout"] == "late\n" and out["state"] == "exited"
    # The first read waited for the line instead of answering nothing.
    assert out["reads"][0] == 5


def test_a_read_answers_at_most_a_mebibyte_whatever_it_asks(runtime: ComponentRuntime, processes: LoadedComponent,
                                                            instance: str) -> None:
    size = 3 * MIB + 5
    out = run(runtime, processes, instance, stream="stdout", max_bytes=64 * MIB,
              argv=["python3", "-c", f"import sys; sys.stdout.write('x' * {size})"])
    assert len(out["stdout"]) == size and out["stdout"] == "x" * size
    assert max(out["reads"]) <= MIB and len(out["reads"]) >= 4
    assert out["offsets"]["stdout"] == size and out["offsets"]["stderr"] == 0


def test_signal_and_timeout_are_distinct_states(runtime: ComponentRuntime, processes: LoadedComponent,
                                                instance: str) -> None:
    killed = run(runtime, processes, instance, argv=["sleep", "60"], signal=15, tag="term")
    assert (killed["state"], killed["signal"], killed["output_ended"]) == ("killed", 15, True)
    assert killed["listed"] == [["term", "killed"]]
    timed = run(runtime, processes, instance, argv=["sleep", "60"], timeout_ms=300)
    assert (timed["state"], timed["signal"]) == ("timed-out", 9)


def test_output_is_read_again_from_a_later_offset_of_one_stream(runtime: ComponentRuntime,
                                                                processes: LoadedComponent, instance: str) -> None:
    out = run(runtime, processes, instance, stream="stderr", stderr_offset=3,
              argv=["sh", "-c", "echo abcdef >&2; echo not-read"])
    assert out["stderr"] == "def\n" and out["stdout"] == ""
    assert out["offsets"] == {"stdout": 0, "stderr": 7}


def test_what_the_provider_refuses_is_the_guests_err(runtime: ComponentRuntime, processes: LoadedComponent,
                                                     instance: str) -> None:
    with pytest.raises(GuestError, match=r"OUT_OF_RANGE: .*past its end"):
        run(runtime, processes, instance, argv=["true"], stdout_offset=1000)
    with pytest.raises(GuestError, match=r"^NOT_FOUND: "):
        run(runtime, processes, "i-none", argv=["true"])
    # The instance keeps working for the next call.
    assert run(runtime, processes, instance, argv=["echo", "ok"])["stdout"] == "ok\n"


def test_a_guest_that_starts_its_own_instance_runs_a_process_in_it(runtime: ComponentRuntime,
                                                                   processes: LoadedComponent) -> None:
    out = run(runtime, processes, "new", argv=["sh", "-c", "echo $GREETING; pwd"], env={"GREETING": "hi"})
    assert out["stdout"] == "hi\n/workspace\n" and out["state"] == "exited"


def test_the_process_functions_are_in_0_2_0_only(runtime: ComponentRuntime, processes: LoadedComponent,
                                                 tmp_path: Any) -> None:
    generator = processes.component.type.imports(runtime.engine)[wit_interface("generator", "0.2.0")].ty
    assert isinstance(generator, ComponentInstanceType)
    assert set(generator.exports(runtime.engine)) >= PROCESS_FUNCTIONS
    info = inspect_component(built_example("processes"), cache_dir=CACHE / "components")
    shown = info.imports[wit_interface("generator", "0.2.0")]
    assert info.problem is None and info.wit_versions == ("0.2.0",)
    assert shown["read-process-output"] == \
        "func(request: read-process-output-request) -> result<process-output, provider-error>"
    assert shown["wait-process"] == "func(request: wait-process-request) -> result<process-info, provider-error>"
    # `worldrt component inspect` shows them.
    out = cli(tmp_path, "component", "inspect", str(built_example("processes")), "--json")
    assert out.returncode == 0, out.stderr
    inspected = json.loads(out.stdout)
    assert inspected["wit_versions"] == ["0.2.0"] and inspected["problem"] is None
    assert inspected["imports"][wit_interface("generator", "0.2.0")] == shown


@pytest.mark.timeout(900)  # a JavaScript component: a minute to build and another to compile, once
def test_the_javascript_example_feeds_a_process_and_pulls_its_output(runtime: ComponentRuntime,
                                                                     instance: str) -> None:
    js = runtime.load(built_example("processes-js"))
    assert wit_interface("generator", "0.2.0") in js.imports
    out = json.loads(runtime.invoke(js, 1, json.dumps({
        "instance_id": instance, "argv": ["sh", "-c", "tr a-z A-Z; echo bye >&2"], "stdin": "from js\n",
        "max_bytes": 3})))
    assert (out["stdout"], out["stderr"], out["stdin_offset"]) == ("FROM JS\n", "bye\n", 8)
    assert (out["state"], out["exit_code"]) == ("exited", 0)
    assert max(out["reads"]) <= 3 and sum(out["reads"]) == 12


OLD_LIST_PROCESSES = """
(component
  (import "worldrt:verse/generator@0.1.0" (instance
    (type $ref (record (field "instance-id" string)))
    (export "list-processes-request" (type $ref-t (eq $ref)))
    (type $info (record (field "process-id" string)))
    (export "process-info" (type $info-t (eq $info)))
    (type $reply (record (field "processes" (list $info-t))))
    (export "list-processes-reply" (type $reply-t (eq $reply)))
    (type $error (record (field "code" string) (field "message" string)))
    (export "provider-error" (type $error-t (eq $error)))
    (export "list-processes" (func (param "request" $ref-t) (result (result $reply-t (error $error-t)))))
  ))
)
"""


def test_a_0_1_0_component_importing_a_process_function_is_refused(runtime: ComponentRuntime, tmp_path: Any) -> None:
    wat = tmp_path / "old-list-processes.wat"
    wat.write_text(OLD_LIST_PROCESSES)
    with pytest.raises(ComponentError, match=r"imports generator\.list-processes with a type this host does not "
                                             r"serve: generator@0\.1\.0 has no function `list-processes` "
                                             r"\(it is new in 0\.2\.0\)"):
        runtime.load(wat)
