"""Issue 18's attacks on shared pools, component logs and file-RPC names (findings 9, 11 and 14), as an
attacker runs them, against a real ``worldrt host serve`` and real provider daemons.

    .venv/bin/python bench/attacks_r18_pools.py        # prints one row per attack

``run_attacks(attack, tmp)`` calls ``attack(finding, description, expected, fn)`` once per attack; ``fn()``
returns (blocked, observed). It starts everything under ``tmp`` and stops it all, even on error. It also
runs against older code (a host without --max-components, a daemon without the per-instance bound): an
attack then reports NOT blocked rather than failing.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.support import HostProcess, alive, cli, processes_under  # noqa: E402
from worldrt.providers import open_channel  # noqa: E402
from worldrt.providers.testing import ProviderDaemon  # noqa: E402
from worldrt.v1 import host_pb, pb  # noqa: E402

Attack = Callable[[str, str, str, Callable[[], tuple[bool, str]]], None]
SERVING = health_pb2.HealthCheckResponse.SERVING
SLEEP = "import time\ntime.sleep(30)\n'woke'"
HEALTH_BOUND_S = 5.0
LOOP_WAT = ROOT / "tests" / "fixtures" / "wat" / "loop.wat"
LOG_LOOP_WAT = ROOT / "bench" / "wat" / "log_loop.wat"
LOG_CALLS = 20_000
LOG_BOUND = 512 * 1024
FORGED_LISTING = """
import __main__ as agent
def forged(msg, fd):
    return {"path": "", "truncated": False, "entries": [
        {"name": "\\udcff", "path": "\\udcff", "size": 0, "mode": 0, "kind": "file", "mtime_ns": 0}]}
agent._list_files.__code__ = forged.__code__
"ok"
"""


def outcome(call: Callable[[], Any]) -> tuple[str, str]:
    """(status code name, details) of a call: ("OK", "") when it succeeds."""
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code().name, exc.details() or ""
    return "OK", ""


def health(address: str) -> str:
    """The health of ``address`` asked with a deadline of HEALTH_BOUND_S: "SERVING", ... or the failure."""
    try:
        with open_channel(address) as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                               timeout=HEALTH_BOUND_S).status
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(status))
    except grpc.RpcError as exc:
        return f"no answer within {HEALTH_BOUND_S:g} s ({exc.code().name})"


def settle(futures: list[Future[tuple[str, str]]], timeout_s: float) -> list[tuple[str, str]]:
    """The outcomes of ``futures``, waiting at most ``timeout_s`` in all (those still running: "RUNNING")."""
    deadline = time.monotonic() + timeout_s
    out = []
    for f in futures:
        try:
            out.append(f.result(timeout=max(0.1, deadline - time.monotonic())))
        except TimeoutError:
            out.append(("RUNNING", ""))
    return out


def count(results: list[tuple[str, str]]) -> str:
    codes: dict[str, int] = {}
    for code, _ in results:
        codes[code] = codes.get(code, 0) + 1
    return ", ".join(f"{n} {c}" for c, n in sorted(codes.items()))


def wait_done(futures: list[Future[tuple[str, str]]], n: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and sum(f.done() for f in futures) < n:
        time.sleep(0.1)
    return sum(f.done() for f in futures)


class HostAttacks:
    """One real host for the host attacks, components limited to 4 of 20 s each (settings older hosts ignore)."""

    def __init__(self, home: Path, pool: ThreadPoolExecutor) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.host = HostProcess(home, env={"WORLDRT_MAX_COMPONENTS": "4", "WORLDRT_COMPONENT_TIMEOUT_S": "20"})
        self.pool = pool
        self.host.stub.PutLink(pb.LinkConfig(source_component="attacker", interfaces=["generator"],
                                             target_provider="morph"))

    def call(self, timeout_s: float = 60, **operation: Any) -> host_pb.ProviderCallReply:
        return self.host.stub.CallProvider(host_pb.ProviderCallRequest(source="attacker", **operation),
                                           timeout=timeout_s)

    def start(self) -> str:
        return str(self.call(start=pb.StartRequest()).instance.instance_id)

    def stop(self, *ids: str) -> None:
        for iid in ids:
            outcome(lambda iid=iid: self.call(timeout_s=30, stop=pb.InstanceRef(instance_id=iid)))

    def long_execs(self) -> tuple[bool, str]:
        busy, quiet = self.start(), self.start()
        others = [self.start() for _ in range(4)]
        futures = []
        try:
            for i in range(45):
                target = busy if i < 29 else others[i % 4]
                futures.append(self.pool.submit(outcome, lambda target=target: self.call(
                    timeout_s=120, execute=pb.ExecuteRequest(instance_id=target, code=SLEEP))))
            time.sleep(3)
            seen = health(self.host.address)
            other = outcome(lambda: self.call(timeout_s=30, execute=pb.ExecuteRequest(instance_id=quiet,
                                                                                      code="1 + 1")))
            early = [f.result() for f in futures if f.done()]
        finally:
            self.stop(busy, *others)
        results = settle(futures, 90)
        self.stop(quiet)
        refused = [d for c, d in early if c == "RESOURCE_EXHAUSTED"]
        blocked = seen == "SERVING" and other[0] == "OK" and bool(refused)
        return blocked, (f"health during 45 long execs: {seen}; another instance's Execute: {other[0]}; refused "
                         f"at once: {len(refused)} ({refused[0][:90] if refused else 'none'}); in the end: "
                         f"{count(results)}")

    def log_flood(self) -> tuple[bool, str]:
        wat = self.host.home / "log_flood.wat"
        wat.write_text(LOG_LOOP_WAT.read_text().replace("(call $log (i32.const 1)", "(call $log (i32.const 2)"))
        component = self.host.load(wat, "log_flood", provider="morph")
        before = self.host.log_path.stat().st_size
        events = list(self.host.stub.Invoke(host_pb.InvokeRequest(component_id=component, verse_id=LOG_CALLS,
                                                                  args="x" * 1000), timeout=600))
        grown = self.host.log_path.stat().st_size - before
        notes = [e.log for e in events if e.HasField("log") and "dropped" in e.log]
        return grown <= LOG_BOUND and len(notes) == 1, (
            f"{LOG_CALLS} log calls of 1000 bytes grew the host's log by {grown} bytes (bound {LOG_BOUND}); "
            f"{sum(e.HasField('log') for e in events)} log events reached the caller; the cut said "
            f"{len(notes)} time(s)")

    def spinning(self) -> tuple[bool, str]:
        quiet = self.start()
        loop = self.host.load(LOOP_WAT, "loop", provider="morph")
        futures = [self.pool.submit(outcome, lambda: list(self.host.stub.Invoke(
            host_pb.InvokeRequest(component_id=loop), timeout=300))) for _ in range(16)]
        time.sleep(3)
        seen = health(self.host.address)
        forwarded = outcome(lambda: self.call(timeout_s=30, execute=pb.ExecuteRequest(instance_id=quiet,
                                                                                      code="2 * 3")))
        listed = cli(self.host.home, "providers", "list", timeout=120)
        run = cli(self.host.home, "component", "run", str(LOOP_WAT), "--verse", "1", timeout=300)
        said = (run.stderr.strip().splitlines() or [""])[-1]
        results = settle(futures, 150)
        self.stop(quiet)
        blocked = (seen == "SERVING" and forwarded[0] == "OK" and listed.returncode == 0 and "is busy" in said
                   and "in use by" not in said)
        return blocked, (f"health with 16 spinning components: {seen}; a provider call: {forwarded[0]}; CLI "
                         f"providers list: exit {listed.returncode}; CLI component run: {said[:120]!r}; the "
                         f"invocations: {count(results)}")

    def hung(self) -> tuple[bool, str]:
        os.kill(self.host.proc.pid, signal.SIGSTOP)
        try:
            out = cli(self.host.home, "providers", "list", timeout=120)
        finally:
            os.kill(self.host.proc.pid, signal.SIGCONT)
        said = (out.stderr.strip().splitlines() or [""])[-1]
        return "is busy" in said and "in use by" not in said, f"CLI with the host stopped: {said[:200]!r}"


class DaemonAttacks:
    def __init__(self, daemon: ProviderDaemon, pool: ThreadPoolExecutor) -> None:
        self.daemon = daemon
        self.stub = daemon.stub
        self.pool = pool

    def one_instance(self) -> tuple[bool, str]:
        busy = self.stub.Start(pb.StartRequest()).instance_id
        other = self.stub.Start(pb.StartRequest()).instance_id
        try:
            futures = [self.pool.submit(outcome, lambda: self.stub.Execute(
                pb.ExecuteRequest(instance_id=busy, code=SLEEP), timeout=120)) for _ in range(45)]
            done = wait_done(futures, 36, 20)
            seen = health(self.daemon.address)
            served = outcome(lambda: self.stub.Execute(pb.ExecuteRequest(instance_id=other, code="3"), timeout=30))
            early = [f.result() for f in futures if f.done()]
        finally:
            outcome(lambda: self.stub.Stop(pb.InstanceRef(instance_id=busy), timeout=30))
        results = settle(futures, 90)
        outcome(lambda: self.stub.Stop(pb.InstanceRef(instance_id=other), timeout=30))
        refused = [d for c, d in early if c == "RESOURCE_EXHAUSTED"]
        return done >= 36 and len(refused) >= 36 and seen == "SERVING" and served[0] == "OK", (
            f"45 execs on one instance: {len(refused)} refused at once "
            f"({refused[0][:100] if refused else 'none'}); health {seen}; another instance {served[0]}; in the "
            f"end: {count(results)}")

    def file_code(self, code: str, call: Callable[[str], Any], expected: str) -> tuple[bool, str]:
        iid = self.stub.Start(pb.StartRequest()).instance_id
        try:
            made = self.stub.Execute(pb.ExecuteRequest(instance_id=iid, code=code), timeout=60)
            got, details = outcome(lambda: call(iid))
        finally:
            outcome(lambda: self.stub.Stop(pb.InstanceRef(instance_id=iid), timeout=30))
        return got == expected, f"{got}: {details[:160]}" + (f" (setup: {made.error[:80]})" if made.error else "")


def run_attacks(attack: Attack, tmp: Path) -> None:
    with ExitStack() as stack:
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=64))
        stack.callback(lambda: [os.kill(p, signal.SIGKILL) for p in alive(processes_under(str(tmp)))])
        daemon = stack.enter_context(ProviderDaemon("morph", state_dir=tmp / "morph", options={"pool_size": "2"}))
        d = DaemonAttacks(daemon, pool)
        attack("r18-9", "45 long execs (sleep 30) on one instance of a provider daemon",
               "one runs, 8 wait, the rest RESOURCE_EXHAUSTED at once naming the instance; health and others "
               "served", d.one_instance)
        stub = d.stub
        attack("r18-14", "ListFiles where the member answers a name holding a lone surrogate",
               "ABORTED (protocol break), not INTERNAL",
               lambda: d.file_code(FORGED_LISTING, lambda iid: stub.ListFiles(pb.ListFilesRequest(instance_id=iid)),
                                   "ABORTED"))
        attack("r18-14", "ListFiles of a folder holding a file name that is not UTF-8",
               "INVALID_ARGUMENT naming the name, not INTERNAL",
               lambda: d.file_code("import os\nos.mkdir('d')\nopen(b'd/caf\\xe9', 'w').close()",
                                   lambda iid: stub.ListFiles(pb.ListFilesRequest(instance_id=iid, path="d")),
                                   "INVALID_ARGUMENT"))
        attack("r18-14", "ReadFile of a unix socket in the workspace", "INVALID_ARGUMENT: not a regular file",
               lambda: d.file_code("import socket\ns = socket.socket(socket.AF_UNIX)\ns.bind('/workspace/sock')",
                                   lambda iid: list(stub.ReadFile(pb.ReadFileRequest(instance_id=iid, path="sock"))),
                                   "INVALID_ARGUMENT"))
        attack("r18-14", "ReadFile of a 300-character name", "INVALID_ARGUMENT: name over 255 bytes",
               lambda: d.file_code("1", lambda iid: list(stub.ReadFile(pb.ReadFileRequest(instance_id=iid,
                                                                                          path="a" * 300))),
                                   "INVALID_ARGUMENT"))
        daemon.stop()

        host_attacks = [
            ("r18-9", "45 long execs through the host (29 on one instance, 16 across four)",
             "health SERVING within 5 s, another instance's Execute served, the excess refused", "long_execs"),
            ("r18-11", f"a component calling log {LOG_CALLS} times with 1000 bytes",
             f"host log grows by at most {LOG_BOUND} bytes; the cut said once", "log_flood"),
            ("r18-9", "16 spinning components through the host",
             "health SERVING, provider calls and the CLI served through the host, the excess 'busy'", "spinning"),
            ("r18-9", "the CLI while the host does not answer (SIGSTOP)",
             "'the host at X is busy', never an embedded host failing on the registry lock", "hung"),
        ]
        try:
            h: HostAttacks | None = HostAttacks(tmp / "host", pool)
        except Exception as exc:  # noqa: BLE001 - every attack is still reported, as not run through
            h, problem = None, f"the host did not start: {type(exc).__name__}: {str(exc)[:200]}"
        if h is not None:
            stack.callback(h.host.kill)
        for finding, description, expected, name in host_attacks:
            attack(finding, description, expected,
                   getattr(h, name) if h is not None else (lambda: (False, problem)))


if __name__ == "__main__":
    def show(finding: str, description: str, expected: str, fn: Callable[[], tuple[bool, str]]) -> None:
        started = time.monotonic()
        try:
            blocked, observed = fn()
        except Exception as exc:  # noqa: BLE001 - a benchmark reports, it does not stop
            blocked, observed = False, f"the attack ended unexpectedly: {type(exc).__name__}: {str(exc)[:300]}"
        print(f"[{finding}] {'blocked' if blocked else 'NOT BLOCKED'} ({time.monotonic() - started:.0f} s) "
              f"{description}\n    expected: {expected}\n    observed: {observed}", flush=True)

    with tempfile.TemporaryDirectory(prefix="worldrt-r18-pools-") as where:
        run_attacks(show, Path(where))
