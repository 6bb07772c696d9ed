"""Attack benchmark: the security reviews' whole attack sets again, in one run: issue 8's (findings 1..18)
and issue 18's (rows ``r18-N``, one module per area: ``bench/attacks_r18_*.py``).

    .venv/bin/python bench/attacks.py [--json bench/results/attacks.json] [--set all|r8|r18]

Issue 18's modules attack as an attacker would (raw NATS clients, raw HTTP, packages on a local index,
hostile programs in sandboxes), so the same modules run against an older checkout too: copy them beside
its ``bench/attacks.py`` to count what got through before.

Every attack runs against real processes: provider daemons started with ``ProviderDaemon`` (morph,
modal, primeintellect, gensyn, ritual, and a TLS gensyn with a token) and ``worldrt host serve``
processes, all with their state in one temporary directory. After every attack each long-lived daemon
is given real work (a sandboxed Execute, an Optimize, a refereed Verify, an inference); a daemon that
fails it has stopped serving. Each daemon's open descriptors and RSS are taken before the attacks and,
after them, waited for (with a bound) to come back to that baseline. A SIGKILL-mid-burst experiment on a
real host counts the registry rows lost against the call events its client saw.

One row per attack: the finding, the attack, what must happen, what happened, blocked yes/no. The exit
status is always 0 (a benchmark, not a test); attacks that were not blocked are listed at the end.

The system call numbers of finding 14 are x86_64's (skipped elsewhere). The cleartext refusals of
finding 12 only ever name 198.18.0.0/15 addresses (RFC 2544's benchmarking range): nothing is sent there.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import grpc
from grpc_health.v1 import health_pb2
from rich.console import Console
from rich.table import Table

from worldrt.host import serve_host
from worldrt.host.registry import Registry
from worldrt.host.routing import DirectRouter
from worldrt.host.verse import example_component
from worldrt.providers import (
    ClientTls,
    InsecureChannelError,
    bearer_problem,
    canonical_json,
    digest,
    open_channel,
)
from worldrt.providers.ritual import KEY_FILE
from worldrt.providers.testing import ProviderDaemon, wait_serving
from worldrt.v1 import host_pb, host_rpc, pb, rpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _report import write_json

from tests.support import (  # the tests' harness: the same hostile code and the same probes
    CACHE,
    KILL_EVERYTHING,
    ROOT,
    SYSCALLS,
    HostProcess,
    alive,
    cmdlines,
    environ_token,
    f32,
    invocation_rows,
    missing_rows,
    open_fds,
    processes_under,
    rss_mib,
    settle,
)

UNREACHABLE = "198.18.0.1"  # RFC 2544: nothing is ever sent there
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
CALL_S = 60.0
FD_SLACK = 5  # descriptors above the baseline still counted as "back"
RSS_SLACK_MIB = 32.0
SETTLE_S = 20.0

# --- attack code (the review's, as in tests/providers/sandbox/test_escapes.py) ----------------------------
# Code that reaches the agent's own channel, as a hostile program in a sandbox can.
CHANNEL = "import __main__ as _agent, array, json, socket, struct\nchan = _agent.STATE.chan\n"

FORGED_FRAMES = {
    "huge size": "struct.pack('>I', 1 << 30)",
    "not JSON": "struct.pack('>I', 9) + b'not json!'",
    "100k-deep JSON": "(lambda b: struct.pack('>I', len(b)) + b)(b'[' * 100000 + b']' * 100000)",
    "exit_code 2**100": "(lambda b: struct.pack('>I', len(b)) + b)(json.dumps({'ev': 'done', "
                        "'exit_code': 2 ** 100}).encode())",
    "value_json of the wrong type": "(lambda b: struct.pack('>I', len(b)) + b)(json.dumps({'ev': 'done', "
                                    "'value_json': 7}).encode())",
    "not an object": "(lambda b: struct.pack('>I', len(b)) + b)(json.dumps(['a list']).encode())",
}

GOOD_OBJECTIVE = "def objective(params, seed):\n    return -abs(params['x'] - 3)\n"
GOOD_STEP = "def step(state, t):\n    return {'x': state['x'] + 1}\n"
GOOD_INFER = "def infer(input, seed):\n    return input + 1"
SPACE = json.dumps({"x": list(range(6))})
DEEP = "[" * 100000 + "]" * 100000


# --- small helpers ------------------------------------------------------------------------------------
def run(stub: Any, instance_id: str, code: str, **kw: Any) -> pb.ExecutionResult:
    return stub.Execute(pb.ExecuteRequest(instance_id=instance_id, code=code, **kw), timeout=CALL_S)


def status(call: Callable[[], object]) -> tuple[grpc.StatusCode | None, str]:
    """The status code and details a call ends with (None and "" when it succeeds)."""
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return None, ""


def code_name(code: grpc.StatusCode | None) -> str:
    return "OK" if code is None else code.name


def stop(stub: Any, *ids: str) -> None:
    for iid in ids:
        try:
            stub.Stop(pb.InstanceRef(instance_id=iid), timeout=CALL_S)
        except grpc.RpcError:
            pass


def proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def until(condition: Callable[[], object], timeout_s: float, every: float = 0.05) -> bool:
    """Poll ``condition`` for at most ``timeout_s``; whether it became true."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(every)


def reap(pids: set[int], timeout_s: float = 30.0) -> set[int]:
    """Wait for ``pids`` (processes this bench started) to be gone; SIGKILL any left. Those left."""
    until(lambda: not alive(pids), timeout_s)
    left = alive(pids)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def worldrt(*args: str, home: Path | None = None, env: dict[str, str] | None = None,
            cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The ``worldrt`` CLI as a process (no token, TLS or DB settings inherited from this one)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("WORLDRT_TOKEN", "WORLDRT_TLS", "WORLDRT_DB"))}
    if home is not None:
        base["WORLDRT_STATE_DIR"] = str(home)
    return subprocess.run([sys.executable, "-m", "worldrt.host.cli", *args], cwd=cwd or home, text=True,
                          capture_output=True, timeout=timeout, env={**base, **(env or {})})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def last_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[-1][:160]


def referee(program: str) -> pb.VerifyRequest:
    honest = [digest({"x": i}) for i in range(3)]
    forged = [digest({"x": 0}), digest({"x": 5}), digest({"x": 6})]
    return pb.VerifyRequest(program_code=program, start_state_json=canonical_json({"x": 0}), steps=2,
                            mode=pb.REFEREE, claims=[pb.Claim(claimant="a", step_digests=honest),
                                                     pb.Claim(claimant="b", step_digests=forged)])


# --- hosts --------------------------------------------------------------------------------------------
class HostProc(HostProcess):
    """The tests' host process, whose stop and kill count what is left instead of failing."""

    def __init__(self, home: Path, *args: str, cwd: Path | None = None) -> None:
        (cwd or home).mkdir(parents=True, exist_ok=True)
        super().__init__(home, *args, cwd=cwd)

    def invoke(self, component: str, verse: int, **spec: Any) -> Iterator[host_pb.InvokeEvent]:
        return self.stub.Invoke(host_pb.InvokeRequest(component_id=component, verse_id=verse,
                                                      args=json.dumps(spec)), timeout=300)

    def stop(self) -> int | None:  # type: ignore[override]
        """SIGTERM, wait, and wait for every process it started to be gone; its exit code."""
        tree = processes_under(str(self.home))
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = None
        reap(tree)
        return code

    def kill(self) -> None:
        """SIGKILL and wait for the host and the providers it started (they follow by parent-death signal)."""
        tree = processes_under(str(self.home))
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        reap(tree)


# --- the bench ----------------------------------------------------------------------------------------
@dataclass
class Row:
    finding: str
    attack: str
    expected: str
    observed: str
    blocked: bool | None  # None: not run here
    seconds: float = 0.0


Outcome = tuple[bool, str] | list[Row]


@dataclass
class Daemon:
    """A long-lived daemon, given real work after every attack."""

    name: str
    daemon: ProviderDaemon
    work: Callable[[ProviderDaemon], str | None]  # what was wrong, or None
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    failed_after: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        assert self.daemon.proc is not None
        return self.daemon.proc.pid


def _sandbox_work(d: ProviderDaemon) -> str | None:
    iid = d.stub.Start(pb.StartRequest(), timeout=CALL_S).instance_id
    try:
        value = run(d.stub, iid, "40 + 2", timeout_ms=20000).value_json
    finally:
        stop(d.stub, iid)
    return None if value == "42" else f"Execute gave {value!r}"


def _optimize_work(d: ProviderDaemon) -> str | None:
    reply = d.stub.Optimize(pb.OptimizeRequest(objective_code=GOOD_OBJECTIVE, space_json=SPACE, budget=8, seed=1),
                            timeout=CALL_S)
    return None if "x" in json.loads(reply.best_json) else f"best {reply.best_json}"


def _verify_work(d: ProviderDaemon) -> str | None:
    reply = d.stub.Verify(referee(GOOD_STEP), timeout=CALL_S, metadata=d.metadata)
    return None if list(reply.honest) == ["a"] else f"honest {list(reply.honest)}"


def _infer_work(d: ProviderDaemon) -> str | None:
    ok = d.stub.Execute(pb.ExecuteRequest(code=GOOD_INFER, input_json="1", seed=1), timeout=CALL_S)
    return None if ok.exit_code == 0 and json.loads(ok.value_json) == 2 else f"exit {ok.exit_code} {ok.error}"


class Bench:
    def __init__(self, tmp: Path, stack: ExitStack) -> None:
        self.tmp = tmp
        self.stack = stack
        self.rows: list[Row] = []
        self.daemons: list[Daemon] = []
        self.checks = 0
        self.pool = ThreadPoolExecutor(max_workers=6)
        stack.callback(self.pool.shutdown)
        self.registry: dict[str, Any] = {}

    # daemons
    def start_daemons(self) -> None:
        self.certs = self.tmp / "tls"
        made = worldrt("tls", "init", str(self.certs), "--host", "localhost", "--ip", "127.0.0.1", "--json")
        if made.returncode != 0:
            raise RuntimeError(f"worldrt tls init: {made.stderr.strip()}")
        self.tls_address = f"127.0.0.1:{free_port()}"
        self.tls_token = f"cmdline-s3cret-{os.getpid()}"
        specs = [
            ("morph", ProviderDaemon("morph", state_dir=self.tmp / "morph", options={"pool_size": "1"}), _sandbox_work),
            ("modal", ProviderDaemon("modal", state_dir=self.tmp / "modal", options={"pool_size": "1"}), _sandbox_work),
            ("primeintellect", ProviderDaemon("primeintellect", state_dir=self.tmp / "pi",
                                              options={"rollout_timeout_ms": "2000"}), _optimize_work),
            ("gensyn", ProviderDaemon("gensyn", state_dir=self.tmp / "gensyn", options={"step_timeout_ms": "2000"}),
             _verify_work),
            ("ritual", ProviderDaemon("ritual", state_dir=self.tmp / "ritual",
                                      options={"reexecute_timeout_ms": "2000"}), _infer_work),
            ("gensyn-tls", ProviderDaemon(
                "gensyn", state_dir=self.tmp / "gensyn-tls", token=self.tls_token, listen=self.tls_address,
                serve_args=("--tls-cert", str(self.certs / "localhost.pem"), "--tls-key",
                            str(self.certs / "localhost.key")),
                tls=ClientTls(ca=self.certs / "ca.pem")), _verify_work),
        ]
        for name, daemon, work in specs:
            self.stack.callback(daemon.stop)
            self.daemons.append(Daemon(name, daemon, work))
        for started in [self.pool.submit(d.daemon.start) for d in self.daemons]:
            started.result()
        by = {d.name: d.daemon for d in self.daemons}
        self.morph, self.modal, self.pi = by["morph"], by["modal"], by["primeintellect"]
        self.gensyn, self.ritual, self.tls = by["gensyn"], by["ritual"], by["gensyn-tls"]
        for _ in range(2):  # warm: the baseline is a daemon that has already served
            problems = self.serving()
            if problems:
                raise RuntimeError(f"daemons do not serve before any attack: {problems}")
        time.sleep(0.5)
        for d in self.daemons:
            d.before = {"fds": open_fds(d.pid), "rss_mib": rss_mib(d.pid)}

    def serving(self) -> dict[str, str]:
        """Real work on every long-lived daemon at once; what went wrong, by daemon."""
        def one(d: Daemon) -> str | None:
            if d.daemon.proc is None or d.daemon.proc.poll() is not None:
                return "the process has exited"
            if proc_state(d.pid) == "T":
                return "the process is stopped (SIGSTOP)"
            try:
                return d.work(d.daemon)
            except grpc.RpcError as exc:
                return f"{code_name(exc.code())}: {exc.details()}"
            except Exception as exc:  # noqa: BLE001 - a benchmark reports, it does not stop
                return f"{type(exc).__name__}: {exc}"

        results = list(self.pool.map(one, self.daemons))
        return {d.name: r for d, r in zip(self.daemons, results) if r}

    # attacks
    def attack(self, finding: str, attack: str, expected: str, fn: Callable[[], Outcome]) -> None:
        """Run one attack (``fn`` returns (blocked, observed), or several rows), then check every daemon."""
        started = time.monotonic()
        try:
            outcome = fn()
        except Exception as exc:  # noqa: BLE001 - reported as not blocked, with what happened
            outcome = (False, f"the attack ended unexpectedly: {type(exc).__name__}: {str(exc)[:300]}")
        took = time.monotonic() - started
        if isinstance(outcome, tuple):
            outcome = [Row(finding, attack, expected, outcome[1], outcome[0])]
        for row in outcome:
            row.seconds = took / len(outcome)
            self.rows.append(row)
        self.checks += 1
        for name, problem in self.serving().items():
            daemon = next(d for d in self.daemons if d.name == name)
            daemon.failed_after.append(f"{attack}: {problem}")
        mark = {True: "blocked", False: "NOT BLOCKED", None: "not run"}
        for row in outcome:
            print(f"  [{row.finding:>3}] {row.attack[:70]:<70} {mark[row.blocked]:>11}  {took:5.1f} s", flush=True)

    def after_attacks(self) -> None:
        """Each daemon's descriptors and RSS, waited for (bounded) to come back to the baseline."""
        deadline = time.monotonic() + SETTLE_S
        for d in self.daemons:
            left = max(0.5, deadline - time.monotonic())
            fd_now = settle(lambda: open_fds(d.pid), d.before["fds"] + FD_SLACK, left)
            left = max(0.5, deadline - time.monotonic())
            rss_now = settle(lambda: rss_mib(d.pid), d.before["rss_mib"] + RSS_SLACK_MIB, left)
            d.after = {"fds": fd_now, "rss_mib": rss_now}


# --- 1, 1b: host files through a snapshot -------------------------------------------------------------
def ritual_key(ritual: ProviderDaemon) -> Path:
    """Ritual's signing key on the host: under the state dir its ProviderDaemon gave it (STATE/ritual/)."""
    return next(ritual.state_dir.rglob(KEY_FILE), ritual.state_dir / "ritual" / KEY_FILE)


def f1_snapshot_symlink(b: Bench) -> Outcome:
    s = b.modal.stub
    key = ritual_key(b.ritual)
    iid = s.Start(pb.StartRequest(), timeout=CALL_S).instance_id
    ids = [iid]
    try:
        plant = run(s, iid, "import os\nhere = os.getcwd()\nmoved = True\ntry:\n    os.rename(here, here + '.x')\n"
                            "except OSError:\n    moved = False\nos.symlink('/etc', 'etc')\nos.symlink('/', 'root')\n"
                            "moved")
        snap = s.Snapshot(pb.SnapshotRequest(instance_id=iid), timeout=CALL_S).snapshot_id
        ids.append(snap)
        copy = s.Start(pb.StartRequest(snapshot_id=snap), timeout=CALL_S).instance_id
        ids.append(copy)
        link = run(s, copy, "import os\nos.path.islink('etc'), os.readlink('etc')").value_json
        targets = {"etc/shadow": "etc/shadow", "/etc/shadow": "/etc/shadow",
                   "root/<modal state>/modal.sock": f"root{b.modal.state_dir}/modal.sock",
                   "root/<ritual state>/" + KEY_FILE: f"root{key}"}
        reads = {name: run(s, copy, f"open({p!r}, 'rb').read()").exit_code for name, p in targets.items()}
    finally:
        stop(s, *reversed(ids))
    copied = [p for p in b.modal.state_dir.rglob("*") if p.name in ("shadow", "passwd")]
    blocked = plant.value_json == "false" and all(code == 1 for code in reads.values()) and not copied
    return blocked, (f"workspace rename {'refused' if plant.value_json == 'false' else 'ALLOWED'}; "
                     f"after Snapshot+Start 'etc' is still a link {link}; reads: "
                     + ", ".join(f"{p} exit {c}" for p, c in reads.items())
                     + f"; host files copied into the state dir: {len(copied)}")


def f1b_mountinfo(b: Bench) -> Outcome:
    s = b.morph.stub
    iid = s.Start(pb.StartRequest(), timeout=CALL_S).instance_id
    try:
        mounts = json.loads(run(s, iid, "open('/proc/self/mountinfo').read()").value_json)
    finally:
        stop(s, iid)
    paths = [str(b.morph.state_dir), str(b.tmp), "/providers", str(ROOT / "providers"), str(ROOT / "host")]
    shown = [p for p in paths if p in mounts]
    return not shown, (f"{len(mounts.splitlines())} mounts inside; host paths shown: {shown or 'none'} "
                       f"(looked for the state dir, the temp root, /providers, the checkout)")


def f1b_ritual_key(b: Bench) -> Outcome:
    key = ritual_key(b.ritual)
    assert b.ritual.proc is not None
    on_host = f"{stat.S_IMODE(key.stat().st_mode):04o}" if key.exists() else "missing"
    paths = [str(key), f"/proc/1/root{key}", f"/proc/{b.ritual.proc.pid}/root{key}", f"/proc/1/cwd/{KEY_FILE}"]
    s = b.morph.stub
    iid = s.Start(pb.StartRequest(), timeout=CALL_S).instance_id
    try:
        probe = (f"import errno\nout = {{}}\nfor p in {paths!r}:\n    try:\n        open(p, 'rb').read()\n"
                 "        out[p] = 'READ'\n    except OSError as exc:\n"
                 "        out[p] = errno.errorcode.get(exc.errno, str(exc.errno))\nout")
        seen = json.loads(run(s, iid, probe).value_json)
    finally:
        stop(s, iid)
    read = [p for p, v in seen.items() if v == "READ"]
    return key.exists() and not read, (f"ritual's key {key} exists on the host (mode {on_host}); from a morph "
                                       f"instance: " + ", ".join(f"{p}: {v}" for p, v in seen.items()))


# --- 2, 3: descriptors over the agent channel ---------------------------------------------------------
def f2_descriptor_flood(b: Bench) -> Outcome:
    s, pid = b.morph.stub, b.daemons[0].pid
    before = open_fds(pid)
    iid = s.Start(pb.StartRequest(), timeout=CALL_S).instance_id
    flood = CHANNEL + (
        "import time\nfd = os.open('/dev/null', os.O_RDONLY)\nframe = json.dumps({'ev': 'stdout', 'd': 'x'}).encode()\n"
        "sent = 0\nfor _ in range(2000):\n    try:\n        chan.sendmsg([struct.pack('>I', len(frame)) + frame],\n"
        "            [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [fd] * 250))])\n        sent += 1\n"
        "    except OSError:\n        time.sleep(0.001)  # the kernel bounds descriptors in flight per sender\n"
        "    if sent == 100:\n        break\nsent")
    try:
        sent = run(s, iid, "import os\n" + flood)
    finally:
        stop(s, iid)
    during = open_fds(pid)
    starts = []
    for _ in range(3):
        starts.append(s.Start(pb.StartRequest(), timeout=CALL_S).instance_id)
    stop(s, *starts)
    settled = settle(lambda: open_fds(pid), before + FD_SLACK)
    blocked = during < before + 10 and settled <= before + FD_SLACK and len(starts) == 3
    return blocked, (f"{sent.value_json or sent.error} frames of 250 descriptors sent (25,000 fds); daemon fds "
                     f"{before} before, {during} right after, {settled} settled; 3 Starts after it: ok")


# --- 4: workers that stop or kill their parent --------------------------------------------------------
def _hostile(calls: list[Callable[[], object]]) -> tuple[list[str], bool]:
    seen, internal = [], False
    for call in calls:
        try:
            reply = call()
            seen.append("OK" if not getattr(reply, "exit_code", 0) else f"exit {reply.exit_code}")
        except grpc.RpcError as exc:
            seen.append(code_name(exc.code()))
            internal |= exc.code() == grpc.StatusCode.INTERNAL
    return seen, internal


def f4_objective(b: Bench) -> Outcome:
    objective = KILL_EVERYTHING + "\ndef objective(params, seed):\n    _attack()\n    return 0.0\n"
    hostile = pb.OptimizeRequest(objective_code=objective, space_json=SPACE, budget=16, seed=1)
    seen, internal = _hostile([lambda: b.pi.stub.Optimize(hostile, timeout=30)] * 2)
    reply = b.pi.stub.Optimize(pb.OptimizeRequest(objective_code=GOOD_OBJECTIVE, space_json=SPACE, budget=32, seed=1),
                               timeout=30)
    best = json.loads(reply.best_json)
    wait_serving(b.pi.address, timeout_s=5)
    state = proc_state(b.daemons[2].pid)
    return not internal and best == {"x": 3} and state != "T", (
        f"2 hostile Optimizes: {', '.join(seen)}; the next Optimize: best {best}; daemon state {state}, SERVING")


def f4_step(b: Bench) -> Outcome:
    step = KILL_EVERYTHING + "\ndef step(state, t):\n    _attack()\n    return {'x': state['x'] + 1}\n"
    seen, internal = _hostile([lambda: b.gensyn.stub.Verify(referee(step), timeout=30)] * 2)
    reply = b.gensyn.stub.Verify(referee(GOOD_STEP), timeout=30)
    wait_serving(b.gensyn.address, timeout_s=5)
    state = proc_state(b.daemons[3].pid)
    return not internal and list(reply.honest) == ["a"] and state != "T", (
        f"2 hostile Verifies: {', '.join(seen)}; the next Verify: honest {list(reply.honest)}; daemon state {state}")


def f4_infer(b: Bench) -> Outcome:
    infer = KILL_EVERYTHING + "\ndef infer(input, seed):\n    _attack()\n    return 1\n"
    request = pb.ExecuteRequest(code=infer, input_json="1", seed=1)
    seen, internal = _hostile([lambda: b.ritual.stub.Execute(request, timeout=30)] * 2)
    ok = b.ritual.stub.Execute(pb.ExecuteRequest(code=GOOD_INFER, input_json="1", seed=1), timeout=30)
    wait_serving(b.ritual.address, timeout_s=5)
    state = proc_state(b.daemons[4].pid)
    good = ok.exit_code == 0 and json.loads(ok.value_json) == 2
    return not internal and good and state != "T", (
        f"2 hostile inferences: {', '.join(seen)}; the next inference: {ok.value_json} (exit {ok.exit_code}); "
        f"daemon state {state}")


# --- 5, 6, 7: the registry ----------------------------------------------------------------------------
def f5_writer_error(b: Bench, caller: Path) -> Outcome:
    """The registry's disk fills up under a running host (a 16 MiB tmpfs)."""
    home, disk = b.tmp / "h-disk", b.tmp / "h-disk-db"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        return [Row("5", "registry writer error: the registry's disk fills up", "", "not run: cannot mount a "
                    f"tmpfs ({mounted.stderr.strip()}), needs root", None)]
    db = disk / "world.duckdb"
    try:
        host = HostProc(home, "--db", str(db))
        try:
            component = host.load(caller, "caller")
            filler = disk / "filler"
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                while True:
                    os.write(fd, b"\0" * 65536)
            except OSError as exc:
                full = exc.errno == 28
            finally:
                os.close(fd)
            latencies = [e.call.latency_ms for e in host.invoke(component, 909, instance_id="", calls=10)
                         if e.HasField("call")]
            t0 = time.monotonic()
            unhealthy = until(lambda: host.health() == NOT_SERVING, 15)
            noticed = time.monotonic() - t0
            out = worldrt("providers", "list", home=home)
            said = out.returncode == 69 and "registry is unhealthy" in out.stderr and "No space" in out.stderr
            filler.unlink()
            recovered = until(lambda: host.health() == SERVING, 20)
            kept = host.stub.RecentInvocations(host_pb.RecentInvocationsRequest(verse_id="909", limit=100),
                                               timeout=CALL_S).invocations
            same = sorted(f32(r.latency_ms) for r in kept) == sorted(f32(x) for x in latencies)
            code = host.stop()
        finally:
            host.kill()
        stored = len(invocation_rows(db, 909))
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
    blocked = full and len(latencies) == 10 and unhealthy and said and recovered and same and code == 0 \
        and stored == 10
    return blocked, (f"disk full; 10 calls served; host NOT_SERVING after {noticed:.1f} s "
                     f"({'yes' if unhealthy else 'NO'}); CLI exit {out.returncode}: {last_line(out.stderr)!r}; "
                     f"space freed: SERVING again {'yes' if recovered else 'NO'}; rows {len(kept)}/10 listed, "
                     f"{stored}/10 in the file; host exit {code}")


def f6_deleted_db(b: Bench, caller: Path) -> Outcome:
    home = b.tmp / "h-deleted"
    db = home / "world.duckdb"
    host = HostProc(home)
    after: list[float] = []
    ok = False
    try:
        component = host.load(caller, "caller")
        seen = 0
        for event in host.invoke(component, 808, instance_id="", calls=60):
            if event.HasField("call"):
                seen += 1
                if seen == 15:
                    db.unlink()
                elif seen > 15:
                    after.append(event.call.latency_ms)
            elif event.HasField("outcome"):
                ok = event.outcome.ok
        unhealthy = until(lambda: host.health() == NOT_SERVING, 10)
        out = worldrt("providers", "list", home=home)
        said = (out.returncode == 69 and f"the registry file {db} was deleted while the host ran" in out.stderr
                and "restart the host" in out.stderr)
        code = host.stop()
    finally:
        host.kill()
    again = HostProc(home)
    try:
        serving = again.health() == SERVING
        code_again = again.stop()
    finally:
        again.kill()
    rows = invocation_rows(db, 808)
    lost = missing_rows(after, rows)
    blocked = ok and unhealthy and said and code == 0 and serving and code_again == 0 and len(after) == 45 \
        and lost == 0
    return blocked, (f"DB file deleted after call 15 of 60 (invocation ok: {ok}); NOT_SERVING: "
                     f"{'yes' if unhealthy else 'NO'}; CLI exit {out.returncode}: {last_line(out.stderr)[:110]!r}; "
                     f"restarted host SERVING: {serving}; of the {len(after)} calls after the deletion {lost} "
                     f"lost ({len(rows)} rows)")


def f7_sigkill_mid_burst(b: Bench, caller: Path, kill_at: int = 150) -> Outcome:
    home = b.tmp / "h-sigkill"
    db = home / "world.duckdb"
    host = HostProc(home)
    latencies: list[float] = []
    errors: list[str] = []
    try:
        component = host.load(caller, "caller")
        try:
            for event in host.invoke(component, 707, instance_id="", calls=3000):
                if event.HasField("call"):
                    if event.call.error:
                        errors.append(event.call.error)
                    latencies.append(event.call.latency_ms)
                    if len(latencies) == kill_at:
                        host.proc.kill()
                    # After the kill, read on: the events the host sent before it died are still in flight.
        except grpc.RpcError:
            pass
    finally:
        host.kill()
    t0 = time.monotonic()
    Registry.open(db).close()  # replays the journal the killed host left
    replay_ms = (time.monotonic() - t0) * 1000
    rows = invocation_rows(db, 707)
    lost = missing_rows(latencies, rows)
    journal = db.with_name(db.name + ".journal")
    emptied = journal.exists() and not journal.stat().st_size
    Registry.open(db).close()
    again = len(invocation_rows(db, 707))
    unique = len({ident for ident, _ in rows}) == len(rows)
    b.registry = {"calls_requested": 3000, "killed_after_events": kill_at, "events_seen": len(latencies),
                  "rows_after_reopen": len(rows), "rows_lost": lost, "extra_rows": max(0, len(rows) - len(latencies)),
                  "duplicate_ids": len(rows) - len({ident for ident, _ in rows}), "reopen_ms": replay_ms,
                  "rows_after_second_open": again}
    blocked = lost == 0 and len(latencies) >= kill_at and len(rows) <= len(latencies) + 1 and unique and emptied \
        and again == len(rows) and not errors
    return blocked, (f"SIGKILL after {kill_at} of 3000 calls; client saw {len(latencies)} call events; reopened "
                     f"registry ({replay_ms:.0f} ms): {len(rows)} rows, {lost} lost, ids unique: {unique}, journal "
                     f"emptied: {emptied}; a second open: {again} rows")


# --- 8, 9: branches and uids --------------------------------------------------------------------------
def f8_branches(b: Bench) -> Outcome:
    s = b.morph.stub
    parent = s.Start(pb.StartRequest(), timeout=CALL_S).instance_id
    ids = [parent]
    try:
        run(s, parent, "open('from_parent.txt', 'w').write('p')\nopen('/tmp/parent.tmp', 'w').write('p')")
        snap = s.Snapshot(pb.SnapshotRequest(instance_id=parent), timeout=CALL_S).snapshot_id
        ids.append(snap)
        a, c = (i.instance_id for i in s.Branch(pb.BranchRequest(snapshot_id=snap, count=2), timeout=CALL_S).instances)
        ids += [a, c]
        inherited = run(s, a, "open('from_parent.txt').read() + open('/tmp/parent.tmp').read()").value_json
        c_pid = json.loads(run(s, c, "import os\nopen('mine.txt', 'w').write('b')\nopen('/tmp/b.tmp', 'w').write('b')\n"
                                     "os.getpid()").value_json)
        probe = (f"import os, signal, glob\nseen = sorted(os.listdir('/tmp')) + sorted(os.listdir('.'))\n"
                 f"procs = sorted(p for p in os.listdir('/proc') if p.isdigit())\ninjected = 0\n"
                 f"for f in glob.glob('/tmp/.worldrt-*.out'):\n    open(f, 'a').write('INJECTED')\n    injected += 1\n"
                 f"try:\n    os.kill({c_pid}, signal.SIGKILL)\n    killed = True\nexcept OSError:\n    killed = False\n"
                 f"[seen, procs, killed, os.getpid(), injected]")
        seen, procs, killed, a_pid, injected = json.loads(run(s, a, probe).value_json)
        later = run(s, c, "print('still me')\nopen('mine.txt').read()")
        run(s, a, "open('/tmp/parent.tmp', 'w').write('changed by a')")
        sibling_tmp = run(s, c, "open('/tmp/parent.tmp').read()").value_json
        parent_tmp = run(s, parent, "open('/tmp/parent.tmp').read()").value_json
    finally:
        stop(s, *reversed(ids))
    sees_sibling = "b.tmp" in seen or "mine.txt" in seen
    clean = later.value_json == '"b"' and later.stdout == "still me\n" and "INJECTED" not in later.stdout
    blocked = (inherited == '"pp"' and not sees_sibling and procs == [str(a_pid)] and not killed and clean
               and sibling_tmp == '"p"' and parent_tmp == '"p"')
    return blocked, (f"branch inherits the parent's files ({inherited}); sees sibling's /tmp or workspace: "
                     f"{sees_sibling}; pids visible: {len(procs)} (its own); SIGKILL of sibling pid {c_pid}: "
                     f"{'DELIVERED' if killed else 'refused'}; capture-file appends: {injected}, sibling's next "
                     f"stdout {later.stdout!r}; a's /tmp write seen by sibling {sibling_tmp}, by parent {parent_tmp}")


def f9_uids_and_keyring(b: Bench) -> Outcome:
    s, m = b.morph.stub, b.modal.stub
    parent = s.Start(pb.StartRequest(), timeout=CALL_S).instance_id
    snap = s.Snapshot(pb.SnapshotRequest(instance_id=parent), timeout=CALL_S).snapshot_id
    members, others, errors = [parent], [], []
    try:
        for _ in range(2):
            reply = s.Branch(pb.BranchRequest(snapshot_id=snap, count=150), timeout=120)
            errors += list(reply.errors)
            members += [i.instance_id for i in reply.instances]
        for _ in range(3):
            others.append(m.Start(pb.StartRequest(), timeout=CALL_S).instance_id)
        uid_code = "import os; os.getuid()"
        uids = [int(run(s, iid, uid_code).value_json) for iid in members]
        uids += [int(run(m, iid, uid_code).value_json) for iid in others]
        keyring = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                   "r = libc.syscall(248, b'user', b'k', b'secret', 6, -4)\n(r, ctypes.get_errno())")
        added = json.loads(run(s, members[1], keyring).value_json)
        read = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                "r = libc.syscall(249, b'user', b'k', None, -4)\n(r, ctypes.get_errno())")  # request_key
        found = json.loads(run(s, members[2], read).value_json)
    finally:
        stop(m, *others)
        stop(s, snap, *reversed(members))
    live = len(members) + len(others)
    shared = live - len(set(uids))
    return [
        Row("9", f"uids of {live} live members (1 instance + 300 branches on morph, 3 instances on modal)",
            "every live member has a uid of its own",
            f"{len(set(uids))} distinct uids for {len(uids)} members ({shared} shared); branch errors: {len(errors)}",
            shared == 0 and len(uids) == 304 and not errors),
        Row("9", "add_key into the user keyring from one branch, request_key from another (x86_64 nr 248/249)",
            "add_key fails with EPERM, nothing to find",
            f"add_key -> {added[0]} errno {added[1]}; request_key from a sibling -> {found[0]} errno {found[1]}",
            added == [-1, 1] and found[0] == -1),
    ]


# --- 10, 17: the agent channel and malformed input ----------------------------------------------------
def f10_channel_flood(b: Bench) -> Outcome:
    s, pid = b.morph.stub, b.daemons[0].pid
    before = rss_mib(pid)
    iid = s.Start(pb.StartRequest(), timeout=CALL_S).instance_id
    flood = CHANNEL + ("frame = json.dumps({'ev': 'stdout', 'd': 'x' * (1 << 20)}).encode()\n"
                       "for _ in range(300):\n    chan.sendall(struct.pack('>I', len(frame)) + frame)\n")
    try:
        code, details = status(lambda: run(s, iid, flood))
        peak = rss_mib(pid)
        later, _ = status(lambda: run(s, iid, "1"))
    finally:
        stop(s, iid)
    blocked = code == grpc.StatusCode.RESOURCE_EXHAUSTED and "output" in details and \
        later == grpc.StatusCode.FAILED_PRECONDITION and peak < before + 64
    return blocked, (f"{code_name(code)} ({details[:90]}); the instance afterwards: {code_name(later)}; "
                     f"daemon RSS {before:.0f} MiB before, {peak:.0f} MiB after (bound +64)")


def f17_forged_frames(b: Bench) -> Outcome:
    s = b.morph.stub
    rows = []
    for name, frame in FORGED_FRAMES.items():
        iid = s.Start(pb.StartRequest(), timeout=CALL_S).instance_id
        try:
            code, details = status(lambda: run(s, iid, CHANNEL + f"chan.sendall({frame})\nimport time\ntime.sleep(5)"))
            later, _ = status(lambda: run(s, iid, "1"))
        finally:
            stop(s, iid)
        ok = code == grpc.StatusCode.ABORTED and ("malformed" in details or "frame" in details) and \
            later == grpc.StatusCode.FAILED_PRECONDITION
        rows.append(Row("17", f"forged agent frame: {name}", "ABORTED naming the frame; the instance is stopped",
                        f"{code_name(code)}: {details[:100]!r}; the instance afterwards: {code_name(later)}", ok))
    return rows


def f17_hostile_values(b: Bench) -> Outcome:
    s = b.morph.stub
    iid = s.Start(pb.StartRequest(), timeout=CALL_S).instance_id
    try:
        big = run(s, iid, "raise SystemExit(2 ** 100)")
        deep = run(s, iid, "eval('[' * 100000 + ']' * 100000)")
    finally:
        stop(s, iid)
    return [
        Row("17", "raise SystemExit(2**100) in an Execute", "a result with exit 1, not INTERNAL",
            f"exit {big.exit_code}, error {big.error[:50]!r}", big.exit_code == 1 and big.error.startswith(
                "SystemExit: 12676506")),
        Row("17", "eval of a 100k-deep list literal in an Execute", "a result with an error, not INTERNAL",
            f"exit {deep.exit_code}, error {deep.error[:60]!r}", deep.exit_code == 1 and bool(deep.error)),
    ]


def f17_deep_json(stub: Any, call: Callable[[Any], object], provider: str) -> Outcome:
    code, details = status(lambda: call(stub))
    after = stub.Capabilities(pb.CapabilitiesRequest(), timeout=CALL_S).provider_id
    return code == grpc.StatusCode.INVALID_ARGUMENT and ("JSON" in details or "nests" in details) and \
        after == provider, f"{code_name(code)}: {details[:90]!r}; Capabilities afterwards: {after}"


# --- 11: memory, disk, limits -------------------------------------------------------------------------
def f11_memory(b: Bench) -> Outcome:
    s, pid = b.morph.stub, b.daemons[0].pid
    iid = s.Start(pb.StartRequest(limits=pb.Limits(memory_mb=256, disk_mb=64)), timeout=CALL_S).instance_id
    hog = ("import os, time\nkids = []\nfor _ in range(6):\n    pid = os.fork()\n    if pid == 0:\n"
           "        try:\n            b = bytearray(200 * 2**20)\n            b[::4096] = b'x' * len(b[::4096])\n"
           "            time.sleep(3)\n        finally:\n            os._exit(0)\n    kids.append(pid)\n"
           "for pid in kids:\n    os.waitpid(pid, 0)\n'done'")
    try:
        code, details = status(lambda: run(s, iid, hog, timeout_ms=20000))
        peaks = [int(p.read_text()) for p in Path("/sys/fs/cgroup").glob(
            f"memory/worldrt-morph-{pid}/{iid}/memory.max_usage_in_bytes")]
    finally:
        stop(s, iid)
    peak = max(peaks) / 2**20 if peaks else None
    blocked = code in (None, grpc.StatusCode.ABORTED, grpc.StatusCode.DEADLINE_EXCEEDED) and peak is not None \
        and peak <= 256 + 64
    return blocked, (f"6 forks x 200 MiB under memory_mb=256: {code_name(code)} {details[:60]!r}; the instance "
                     f"cgroup's peak {'none found' if peak is None else f'{peak:.0f} MiB'} (bound 320 MiB = "
                     f"memory + disk)")


def f11_disk(b: Bench) -> Outcome:
    s = b.morph.stub
    iid = s.Start(pb.StartRequest(limits=pb.Limits(disk_mb=64)), timeout=CALL_S).instance_id
    fill = ("written = 0\nerror = None\ntry:\n    for i in range(20):\n        with open(f'f{i}', 'wb') as f:\n"
            "            f.write(b'x' * (16 * 2**20))\n        written += 1\nexcept OSError as exc:\n"
            "    error = exc.errno\nwritten, error")
    try:
        written, error = json.loads(run(s, iid, fill).value_json)
        on_host = 0
        for p in b.morph.state_dir.rglob("*"):
            try:
                on_host += p.stat().st_size if p.is_file() else 0
            except OSError:
                pass
        room = run(s, iid, "import os; os.remove('f0'); open('g', 'w').write('room again')").value_json
    finally:
        stop(s, iid)
    blocked = written <= 4 and error == 28 and on_host < 16 * 2**20 and room == "10"
    return blocked, (f"20 x 16 MiB under disk_mb=64: {written} files written, then errno {error} "
                     f"({'ENOSPC' if error == 28 else 'not ENOSPC'}); the morph state dir on the host holds "
                     f"{on_host / 2**20:.1f} MiB; after a delete there is room again: {room == '10'}")


def f11_limits(b: Bench) -> Outcome:
    asked = {"memory_mb=262144": pb.Limits(memory_mb=65536 * 4), "processes=4096": pb.Limits(processes=4096),
             "cpu_s=86400": pb.Limits(cpu_s=86400), "disk_mb=10^7": pb.Limits(disk_mb=10**7)}
    seen = {}
    for name, limits in asked.items():
        code, details = status(lambda: stop(b.morph.stub, b.morph.stub.Start(pb.StartRequest(limits=limits),
                                                                           timeout=CALL_S).instance_id))
        seen[name] = (code, details)
    blocked = all(c == grpc.StatusCode.INVALID_ARGUMENT and "this machine" in d for c, d in seen.values())
    return blocked, "; ".join(f"{n}: {code_name(c)}" for n, (c, _) in seen.items())


# --- 12: cleartext and TLS ----------------------------------------------------------------------------
def f12_open_channel(b: Bench) -> Outcome:
    target = f"{UNREACHABLE}:50051"
    t0 = time.monotonic()
    try:
        open_channel(target, token="t0ken").close()
        return False, f"a channel to {target} was opened with a token in cleartext"
    except InsecureChannelError as exc:
        message = str(exc)
    return "refusing to send a bearer token in cleartext" in message, (
        f"InsecureChannelError in {(time.monotonic() - t0) * 1000:.1f} ms: {message[:100]!r}")


def f12_router(b: Bench) -> Outcome:
    target = f"{UNREACHABLE}:50051"
    try:
        DirectRouter({"generator": target}, token="t0ken")
        return False, "DirectRouter accepted a cleartext link to a non-loopback address with a token"
    except InsecureChannelError as exc:
        return True, f"InsecureChannelError: {str(exc)[:100]!r}"


def f12_cli(b: Bench) -> Outcome:
    target = f"{UNREACHABLE}:50051"
    home = b.tmp / "cli-cleartext"
    t0 = time.monotonic()
    out = worldrt("providers", "list", "--host", target, "--home", str(home), env={"WORLDRT_TOKEN": "t0ken"},
                  cwd=b.tmp)
    took = time.monotonic() - t0
    refused = out.returncode == 5 and f"refusing to send a bearer token in cleartext to {target}" in out.stderr
    embedded = (home / "world.duckdb").exists()
    return refused and not embedded and took < 30, (
        f"exit {out.returncode} in {took:.1f} s: {last_line(out.stderr)[:100]!r}; embedded host made instead: "
        f"{embedded}")


def f12_listen(b: Bench) -> Outcome:
    listen = f"{UNREACHABLE}:{free_port()}"
    provider = worldrt("provider", "serve", "gensyn", "--listen", listen, "--state-dir", str(b.tmp / "listen-p"),
                       env={"WORLDRT_TOKEN": "t0ken"}, cwd=b.tmp)
    host = worldrt("host", "serve", "--listen", listen, "--home", str(b.tmp / "listen-h"), cwd=b.tmp)
    ok = all(o.returncode == 2 and f"refusing to listen on {listen} in cleartext" in o.stderr for o in (provider, host))
    return ok, (f"provider serve with a token: exit {provider.returncode} {last_line(provider.stderr)[:70]!r}; "
                f"host serve: exit {host.returncode} {last_line(host.stderr)[:60]!r}")


def f12_tls(b: Bench) -> Outcome:
    def capabilities(tls: ClientTls | None) -> str:
        with open_channel(b.tls_address, tls=tls, token=b.tls_token) as channel:
            call = rpc.WorldRuntimeStub(channel).Capabilities
            code, _ = status(lambda: call(pb.CapabilitiesRequest(), timeout=5, metadata=b.tls.metadata))
            return code_name(code)

    seen = {"its CA": capabilities(ClientTls(ca=b.certs / "ca.pem")), "the system's roots": capabilities(ClientTls()),
            "cleartext": capabilities(None)}
    ok = seen["its CA"] == "OK" and seen["the system's roots"] == seen["cleartext"] == "UNAVAILABLE"
    return ok, "; ".join(f"client with {k}: {v}" for k, v in seen.items())


# --- 14: seccomp --------------------------------------------------------------------------------------
def f14_seccomp(b: Bench) -> Outcome:
    s = b.morph.stub
    if platform.machine() != "x86_64":
        return [Row("14", f"seccomp: {name}", "", f"not run: the syscall numbers are x86_64's, this is "
                    f"{platform.machine()}", None) for name in SYSCALLS]
    code = ("import ctypes, json\nlibc = ctypes.CDLL(None, use_errno=True)\nout = {}\n"
            f"for name, (nr, arg) in {SYSCALLS!r}.items():\n"
            "    ctypes.set_errno(0)\n    r = libc.syscall(nr, ctypes.c_long(arg), 0, 0, 0, 0)\n"
            "    out[name] = (r, ctypes.get_errno())\nout")
    shell = "unshare --user --map-root-user true; echo $?"
    parent = s.Start(pb.StartRequest(), timeout=CALL_S).instance_id
    ids = [parent]
    results, shells = {}, {}
    try:
        snap = s.Snapshot(pb.SnapshotRequest(instance_id=parent), timeout=CALL_S).snapshot_id
        ids.append(snap)
        branch = s.Branch(pb.BranchRequest(snapshot_id=snap, count=1), timeout=CALL_S).instances[0].instance_id
        ids.append(branch)
        for where, target in (("instance", parent), ("branch", branch)):
            results[where] = json.loads(run(s, target, code).value_json)
            shells[where] = run(s, target, shell, language="shell").stdout.strip()
    finally:
        stop(s, *reversed(ids))
    names = {1: "EPERM", 38: "ENOSYS"}
    rows = []
    for name, (nr, _) in SYSCALLS.items():
        got = {where: tuple(results[where][name]) for where in results}
        ok = all(r == -1 and e in (1, 38) for r, e in got.values())
        rows.append(Row("14", f"seccomp: {name} (x86_64 nr {nr})", "-1 with EPERM (or ENOSYS) in an instance and "
                        "a branch", "; ".join(f"{w}: {r} {names.get(e, f'errno {e}')}" for w, (r, e) in got.items()),
                        ok))
    rows.append(Row("14", "shell: unshare --user --map-root-user true", "fails in an instance and a branch",
                    "; ".join(f"{w}: exit status {v!r}" for w, v in shells.items()),
                    all(v != "0" for v in shells.values())))
    return rows


# --- 15, 18 (sandbox) ---------------------------------------------------------------------------------
def f15_partial_trailer(b: Bench) -> Outcome:
    s = b.morph.stub
    iid = s.Start(pb.StartRequest(), timeout=CALL_S).instance_id
    try:
        run(s, iid, "print('y' * 100000)\nwhile True:\n    pass", timeout_ms=500)
        return False, "the run did not time out"
    except grpc.RpcError as exc:
        code, trailer = exc.code(), dict(exc.trailing_metadata() or ()).get("x-worldrt-partial-result-bin")
    finally:
        stop(s, iid)
    partial = pb.ExecutionResult.FromString(trailer) if trailer else None
    ok = code == grpc.StatusCode.DEADLINE_EXCEEDED and partial is not None and partial.stdout.startswith("yyyy") \
        and "more characters not shown" in partial.stdout and len(partial.SerializeToString()) < 4096
    size = len(partial.SerializeToString()) if partial else 0
    return ok, f"{code_name(code)}; partial result in the trailer: {size} bytes, stdout capped: " \
               f"{partial is not None and 'more characters not shown' in partial.stdout}"


def f18_shell_job(b: Bench) -> Outcome:
    s = b.morph.stub
    iid = s.Start(pb.StartRequest(), timeout=CALL_S).instance_id
    try:
        t0 = time.monotonic()
        result = run(s, iid, "sleep 30 & echo started", language="shell", timeout_ms=20000)
        took = time.monotonic() - t0
    finally:
        stop(s, iid)
    return result.stdout == "started\n" and result.exit_code == 0 and took < 5, (
        f"returned in {took * 1000:.0f} ms, exit {result.exit_code}, stdout {result.stdout!r}")


# --- 13, 16, 18 (host) --------------------------------------------------------------------------------
def f16_daemon_cmdline(b: Bench) -> Outcome:
    pid = b.daemons[5].pid
    line = Path(f"/proc/{pid}/cmdline").read_bytes()
    env_token = environ_token(pid)
    return b.tls_token.encode() not in line and env_token == b.tls_token, (
        f"token in /proc/{pid}/cmdline: {b.tls_token.encode() in line}; passed in its environment: "
        f"{env_token == b.tls_token}")


def host_attacks(b: Bench, caller: Path) -> None:
    """One host for findings 13, 16 and 18: tokens, headers, link tokens, redaction, caps, file modes."""
    cwd = b.tmp / "h-auth"
    home = cwd / "state"
    secret, token, key = "sk-live-7f3a9c2b11", "tok-5e1d77aa", "sk-env-0b9c4d"
    cwd.mkdir()
    (cwd / "secret").write_text(secret + "\n")
    host = HostProc(home, cwd=cwd)
    try:
        def token_required() -> Outcome:
            mode = stat.S_IMODE((home / "host.token").stat().st_mode)
            with grpc.insecure_channel(host.address) as channel:
                code, details = status(lambda: host_rpc.HostStub(channel).ListLinks(host_pb.ListLinksRequest(),
                                                                                    timeout=CALL_S))
            ok = code == grpc.StatusCode.UNAUTHENTICATED and "authorization" in details and mode == 0o600 \
                and len(host.token) >= 32
            return ok, (f"a call with no token: {code_name(code)} ({details[:60]!r}); the token the host made: "
                        f"{len(host.token)} chars in host.token mode {mode:04o}")

        def two_headers() -> Outcome:
            good, bad = ("authorization", f"Bearer {host.token}"), ("authorization", "Bearer wrong")
            seen = []
            with grpc.insecure_channel(host.address) as channel:
                stub = host_rpc.HostStub(channel)
                for metadata in ((bad, good), (good, bad), (good, good)):
                    code, details = status(lambda: stub.ListLinks(host_pb.ListLinksRequest(), metadata=metadata,
                                                                  timeout=CALL_S))
                    seen.append(code == grpc.StatusCode.UNAUTHENTICATED and "2 authorization headers" in details)
                one, _ = status(lambda: stub.ListLinks(host_pb.ListLinksRequest(), metadata=(good,), timeout=CALL_S))
            pgood, pbad = ("authorization", f"Bearer {b.tls_token}"), ("authorization", "Bearer wrong")
            for metadata in ((pgood, pbad), (pbad, pgood)):
                code, details = status(lambda: b.tls.stub.Capabilities(pb.CapabilitiesRequest(), metadata=metadata,
                                                                        timeout=CALL_S))
                seen.append(code == grpc.StatusCode.UNAUTHENTICATED and "2 authorization headers" in details)
            return all(seen) and one is None, (f"{sum(seen)}/5 calls with two headers refused (host: bad+good, "
                                               f"good+bad, good+good; provider: good+bad, bad+good); one good "
                                               f"header: {code_name(one)}")

        def constant_time() -> Outcome:
            source = inspect.getsource(bearer_problem)
            host_uses = "bearer_problem(" in inspect.getsource(sys.modules[serve_host.__module__])
            t = host.token
            wrong = {"first char wrong": ("A" if t[0] != "A" else "B") + t[1:],
                     "last char wrong": t[:-1] + ("A" if t[-1] != "A" else "B"), "1 char": "x"}
            samples: dict[str, list[float]] = {k: [] for k in wrong}
            codes = set()
            with grpc.insecure_channel(host.address) as channel:
                call = host_rpc.HostStub(channel).ListLinks
                for i in range(320):
                    for kind, value in wrong.items():
                        t0 = time.perf_counter()
                        code, _ = status(lambda: call(host_pb.ListLinksRequest(), timeout=CALL_S,
                                                      metadata=(("authorization", f"Bearer {value}"),)))
                        if i >= 20:  # warm-up
                            samples[kind].append((time.perf_counter() - t0) * 1e6)
                        codes.add(code)
            med = {k: sorted(v)[len(v) // 2] for k, v in samples.items()}
            gap = abs(med["first char wrong"] - med["last char wrong"]) / med["last char wrong"]
            ok = "hmac.compare_digest" in source and host_uses and codes == {grpc.StatusCode.UNAUTHENTICATED} \
                and gap < 0.2
            return ok, (f"the check is hmac.compare_digest: {'hmac.compare_digest' in source} (host uses it: "
                        f"{host_uses}); median rejection "
                        + ", ".join(f"{k} {v:.0f} us" for k, v in med.items()) + f" (first vs last {gap:.1%}, "
                        "noise dominates); all UNAUTHENTICATED")

        def link_token() -> Outcome:
            put = worldrt("link", "put", "generator=modal", "--source", "caller", "--set", "token=link-t0ken",
                          home=home)
            info = host.stub.LoadComponent(host_pb.LoadComponentRequest(path=str(caller)), timeout=CALL_S)
            events = list(host.invoke(info.component_id, 5, instance_id="", calls=2))
            errors = [e.call.error for e in events if e.HasField("call")]
            ok = put.returncode == 0 and events[-1].outcome.ok and errors == ["", ""]
            return ok, (f"link put exit {put.returncode}; 2 calls to the host-managed modal: errors {errors}, "
                        f"outcome ok {events[-1].outcome.ok}")

        b.attack("18", "host: a call with no token", "UNAUTHENTICATED; the host made a private token",
                 token_required)
        b.attack("18", "two authorization headers (host and provider)", "UNAUTHENTICATED: send exactly one",
                 two_headers)
        b.attack("18", "timing of wrong tokens (first vs last char wrong)", "a constant-time compare",
                 constant_time)
        b.attack("18", "link put --set token=X, then calls through the host", "the calls still reach modal "
                 "(the host's own token is the bearer)", link_token)

        stored: dict[str, Any] = {}

        def redaction() -> Outcome:
            put = worldrt("link", "put", "generator=modal", "--source", "caller", "--set", f"token={token}",
                          "--set", "tier=gold", "--secret-file", f"api={cwd / 'secret'}", home=home)
            info = host.stub.LoadComponent(host_pb.LoadComponentRequest(path=str(caller)), timeout=CALL_S)
            code = f"print('{secret}' * 2)\nprint('{token}')\nprint('x' * 100_000)"
            outcome = next(e.outcome for e in host.invoke(info.component_id, 31, code=code, calls=3, timeout_ms=20_000,
                                                      env={"API_KEY": key, "HOME": "/w"}) if e.HasField("outcome"))
            rows = host.stub.RecentInvocations(host_pb.RecentInvocationsRequest(verse_id="31", limit=10),
                                               timeout=CALL_S).invocations
            stored["rows"] = rows
            leaks = 0
            env_redacted = code_redacted = True
            for row in rows:
                params = json.loads(row.input_params)
                env_redacted &= params["env"] == {"API_KEY": "<redacted>", "HOME": "<redacted>"}
                code_redacted &= "<redacted>" in params["code"]
                leaks += sum(s in text for text in (row.input_params, row.output_result) for s in (secret, token, key))
            listed = next(link for link in host.stub.ListLinks(host_pb.ListLinksRequest(), timeout=CALL_S).links
                      if link.source_component == "caller")
            link_ok = dict(listed.secrets) == {"api": "<redacted>"} and \
                dict(listed.values) == {"token": "<redacted>", "tier": "gold"}
            ok = put.returncode == 0 and outcome.ok and len(rows) == 3 and env_redacted and code_redacted \
                and leaks == 0 and link_ok
            return ok, (f"{len(rows)} rows: env values redacted {env_redacted}, secrets in code redacted "
                        f"{code_redacted}, secret/token/env value found in rows {leaks} times; ListLinks shows "
                        f"secrets {dict(listed.secrets)} values {dict(listed.values)}")

        def output_cap() -> Outcome:
            rows = stored.get("rows") or []
            results = [json.loads(r.output_result) for r in rows]
            sizes = [len(r["stdout"].encode()) for r in results]
            full = [r.get("stdout_bytes", 0) for r in results]
            ok = bool(rows) and all(n <= 4096 for n in sizes) and all(n > 100_000 for n in full) and \
                all("<redacted>" in r["stdout"] for r in results)
            return ok, f"stored stdout {sizes} bytes of {full} produced (cap 4096), redacted inside: " \
                       f"{all('<redacted>' in r['stdout'] for r in results)}"

        files = [home / n for n in ("world.duckdb", "world.duckdb.wal", "world.duckdb.lock", "world.duckdb.journal",
                                    "host.token")]

        def file_modes() -> Outcome:
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files if p.exists()}
            home_mode = stat.S_IMODE(home.stat().st_mode)
            ok = "world.duckdb.wal" in modes and set(modes.values()) == {0o600} and len(modes) == len(files) \
                and home_mode == 0o700
            return ok, ", ".join(f"{n} {m:04o}" for n, m in modes.items()) + f"; home {home_mode:04o}"

        def host_cmdlines() -> Outcome:
            state = host.stub.ProviderStatus(host_pb.ProviderStatusRequest(provider_id="modal"), timeout=CALL_S)
            provider_token = environ_token(state.pid)
            lines = cmdlines(processes_under(str(home)) | {host.proc.pid})
            leaked = [pid for pid, line in lines.items()
                      if host.token.encode() in line or (provider_token and provider_token.encode() in line)]
            ok = bool(provider_token) and provider_token != host.token and host.proc.pid in lines and \
                state.pid in lines and not leaked
            return ok, (f"{len(lines)} processes (host, its providers, their sandboxes): token on a command line in "
                        f"{len(leaked)}; providers get their own token in the environment: "
                        f"{bool(provider_token) and provider_token != host.token}")

        b.attack("13", "secrets in env values, code, stdout and link values", "redacted in stored rows and "
                 "ListLinks", redaction)
        b.attack("13", "100 KB of stdout in a stored row", "capped at 4096 bytes", output_cap)
        b.attack("13", "modes of the registry, WAL, lock, journal and token files", "0600 (home 0700)",
                 file_modes)
        b.attack("16", "host and host-managed providers' command lines", "no token on any command line",
                 host_cmdlines)
        code = host.stop()
    finally:
        host.kill()

    def at_rest() -> Outcome:
        raw = [p.name for p in files if p.exists() and any(s.encode() in p.read_bytes() for s in (secret, token, key))]
        con = duckdb.connect(str(home / "world.duckdb"), read_only=True)
        try:
            leaked = con.execute("SELECT count(*) FROM provider_invocations WHERE input_params::VARCHAR LIKE ? "
                                 "OR output_result::VARCHAR LIKE ? OR input_params::VARCHAR LIKE ? "
                                 "OR output_result::VARCHAR LIKE ? OR input_params::VARCHAR LIKE ?",
                                 [f"%{secret}%", f"%{secret}%", f"%{token}%", f"%{token}%", f"%{key}%"]).fetchone()[0]
            configs = [row[0] for row in con.execute("SELECT link_config FROM provider_links").fetchall()]
        finally:
            con.close()
        in_links = sum(secret in c or token in c for c in configs)
        return code == 0 and not raw and leaked == 0 and in_links == 0, (
            f"host exit {code}; files holding a secret byte-for-byte: {raw or 'none'}; rows with one: {leaked}; "
            f"link configs with one: {in_links}")

    b.attack("13", "secrets at rest after the host stopped (raw files, rows, link configs)", "none found", at_rest)


# --- the run ------------------------------------------------------------------------------------------
R18_AREAS = ("images", "buildnet", "access", "latticedata", "api", "pools")


def run_r18(b: Bench) -> None:
    """Issue 18's attacks, one module per area; each starts (and stops) what it attacks under its own folder."""
    import importlib

    for area in R18_AREAS:
        try:
            module = importlib.import_module(f"attacks_r18_{area}")
        except ImportError as exc:
            b.rows.append(Row(f"r18-{area}", f"issue 18's {area} attacks", "run", f"not run: {exc}", None))
            continue
        folder = b.tmp / f"r18-{area}"
        folder.mkdir()
        try:
            module.run_attacks(b.attack, folder)
        except Exception as exc:  # noqa: BLE001 - reported as not blocked
            b.rows.append(Row(f"r18-{area}", f"issue 18's {area} attacks", "run to the end",
                              f"stopped: {type(exc).__name__}: {str(exc)[:300]}", False))


def run_all(b: Bench, which: str = "all") -> None:
    b.start_daemons()
    if which == "r18":
        run_r18(b)
        b.after_attacks()
        return
    caller = example_component("caller", CACHE / "examples")
    A = b.attack
    A("1", "symlinks to /etc and / planted in a modal workspace, Snapshot, Start, read /etc/shadow",
      "the workspace cannot be swapped; links stay links; no host file is read or copied", lambda: f1_snapshot_symlink(b))
    A("1b", "read /proc/self/mountinfo in a morph instance", "no host path of the state dir or checkout",
      lambda: f1b_mountinfo(b))
    A("1b", "read ritual's signing key (found from its ProviderDaemon) from a morph instance", "ENOENT/EACCES",
      lambda: f1b_ritual_key(b))
    A("2/3", "100 agent frames carrying 250 SCM_RIGHTS descriptors each", "the daemon keeps none; Start still works",
      lambda: f2_descriptor_flood(b))
    A("4", "primeintellect objective SIGSTOPs/SIGKILLs its parent, pid 1, kill(-1)", "no INTERNAL; the next "
      "Optimize is served", lambda: f4_objective(b))
    A("4", "gensyn step SIGSTOPs/SIGKILLs its parent, pid 1, kill(-1)", "no INTERNAL; the next Verify is served",
      lambda: f4_step(b))
    A("4", "ritual infer SIGSTOPs/SIGKILLs its parent, pid 1, kill(-1)", "the next inference is served",
      lambda: f4_infer(b))
    A("8", "branches of one snapshot: sibling's /tmp and workspace, capture-file injection, SIGKILL a sibling",
      "each branch sees only its own files and processes", lambda: f8_branches(b))
    A("9", "uids and keyrings across ~300 live members", "", lambda: f9_uids_and_keyring(b))
    A("10", "300 x 1 MiB stdout frames written straight to the agent channel", "RESOURCE_EXHAUSTED; daemon RSS "
      "bounded (+64 MiB)", lambda: f10_channel_flood(b))
    A("11", "6 forks of 200 MiB each in one instance (memory_mb=256)", "the instance's cgroup bounds them together",
      lambda: f11_memory(b))
    A("11", "20 files of 16 MiB in a workspace with disk_mb=64", "ENOSPC within the quota; nothing on the host disk",
      lambda: f11_disk(b))
    A("11", "Start with limits above the machine (memory, processes, cpu, disk)", "INVALID_ARGUMENT for each",
      lambda: f11_limits(b))
    A("12", f"open_channel to {UNREACHABLE}:50051 with a token, no TLS", "refused before anything is sent",
      lambda: f12_open_channel(b))
    A("12", f"DirectRouter linking to {UNREACHABLE}:50051 with a token, no TLS", "refused",
      lambda: f12_router(b))
    A("12", f"worldrt providers list --host {UNREACHABLE}:50051 with WORLDRT_TOKEN",
      "exit 5 (FailedPrecondition), one line, no embedded host", lambda: f12_cli(b))
    A("12", f"provider/host serve --listen {UNREACHABLE}:PORT in cleartext", "refused to listen",
      lambda: f12_listen(b))
    A("12", "a TLS daemon called without its CA (system roots; cleartext)", "UNAVAILABLE; with the CA: served",
      lambda: f12_tls(b))
    A("14", "system calls seccomp must deny", "", lambda: f14_seccomp(b))
    A("15", "100 KB of stdout, then a timeout (500 ms)", "DEADLINE_EXCEEDED with a capped partial trailer (< 4 KiB)",
      lambda: f15_partial_trailer(b))
    A("16", "a daemon's token on its command line", "only in its environment", lambda: f16_daemon_cmdline(b))
    A("17", "forged agent frames", "", lambda: f17_forged_frames(b))
    A("17", "hostile values in Execute", "", lambda: f17_hostile_values(b))
    A("17", "100k-deep JSON in morph Init.json", "INVALID_ARGUMENT; the daemon still answers",
      lambda: f17_deep_json(b.morph.stub, lambda s: s.Init(pb.ProviderConfig(json=DEEP), timeout=CALL_S), "morph"))
    A("17", "100k-deep JSON in primeintellect space_json", "INVALID_ARGUMENT; the daemon still answers",
      lambda: f17_deep_json(b.pi.stub, lambda s: s.Optimize(pb.OptimizeRequest(
          objective_code="def objective(p, s):\n    return 0", space_json=DEEP, budget=8), timeout=CALL_S),
          "primeintellect"))
    A("17", "100k-deep JSON in ritual attestation_json", "INVALID_ARGUMENT; the daemon still answers",
      lambda: f17_deep_json(b.ritual.stub, lambda s: s.Verify(pb.VerifyRequest(
          mode=pb.ATTESTATION, attestation_json="{\"a\":" * 100000), timeout=CALL_S), "ritual"))
    A("18", "a shell `sleep 30 &` that keeps stdout open", "Execute returns at once (< 5 s)", lambda: f18_shell_job(b))
    try:
        host_attacks(b, caller)
    except Exception as exc:  # noqa: BLE001 - reported as not blocked
        b.rows.append(Row("13/16/18", "the host of the token and redaction attacks", "starts and serves",
                          f"the attacks ended unexpectedly: {type(exc).__name__}: {str(exc)[:300]}", False))
    A("5", "registry writer error: the registry's disk fills up under a running host",
      "NOT_SERVING and the CLI says why; SERVING again when there is room; no row lost",
      lambda: f5_writer_error(b, caller))
    A("6", "the registry file deleted under a running host mid-burst", "NOT_SERVING, restart the host; rows of the "
      "calls after it kept for the next start", lambda: f6_deleted_db(b, caller))
    A("7", "SIGKILL of the host mid-burst (a component making 3000 provider calls)", "every call the client saw "
      "has its row after reopening the registry", lambda: f7_sigkill_mid_burst(b, caller))
    b.after_attacks()


def report(b: Bench, seconds: float, orphans: int, path: str) -> None:
    width = None if sys.stdout.isatty() else 220
    console = Console(width=width)
    table = Table(title="security review attacks (issues 8 and 18), against real daemons and hosts")
    for column in ("#", "attack", "expected", "observed", "blocked"):
        table.add_column(column, overflow="fold")
    for row in b.rows:
        mark = {True: "yes", False: "[bold red]NO[/]", None: "not run"}[row.blocked]
        table.add_row(row.finding, row.attack, row.expected, row.observed, mark)
    console.print(table)
    tried = [r for r in b.rows if r.blocked is not None]
    blocked = [r for r in tried if r.blocked]
    down = [d for d in b.daemons if d.failed_after]
    daemon_rows = []
    for d in b.daemons:
        fd_ok = d.after["fds"] <= d.before["fds"] + FD_SLACK
        rss_ok = d.after["rss_mib"] <= d.before["rss_mib"] + RSS_SLACK_MIB
        daemon_rows.append([d.name, str(int(d.before["fds"])), str(int(d.after["fds"])), f"{d.before['rss_mib']:.1f}",
                            f"{d.after['rss_mib']:.1f}", "yes" if fd_ok and rss_ok else "NO",
                            "yes" if not d.failed_after else f"NO ({len(d.failed_after)})"])
    daemons = Table(title=f"daemons (after: waited up to {SETTLE_S:.0f} s to settle; back: within {FD_SLACK} fds "
                          f"and {RSS_SLACK_MIB:.0f} MiB of before)")
    for column in ("daemon", "fds before", "fds after", "RSS before MiB", "RSS after MiB", "back to baseline",
                   f"served after each of {b.checks} attacks"):
        daemons.add_column(column, justify="left" if column == "daemon" else "right")
    for cells in daemon_rows:
        daemons.add_row(*cells)
    console.print(daemons)
    reg = b.registry
    print(f"attacks tried {len(tried)}, blocked {len(blocked)}"
          + (f", not run {len(b.rows) - len(tried)}" if len(b.rows) > len(tried) else ""))
    print(f"daemons that stopped serving: {len(down)} of {len(b.daemons)} (target 0; real work after each of "
          f"{b.checks} attacks)")
    for d in b.daemons:
        print(f"  {d.name}: fds {int(d.before['fds'])} -> {int(d.after['fds'])}, "
              f"RSS {d.before['rss_mib']:.1f} -> {d.after['rss_mib']:.1f} MiB")
    if reg:
        print(f"registry rows lost in SIGKILL mid-burst: {reg['rows_lost']} (target 0; {reg['events_seen']} call "
              f"events seen, {reg['rows_after_reopen']} rows after reopening)")
    else:
        print("registry rows lost in SIGKILL mid-burst: not measured (the experiment did not complete)")
    print(f"processes left behind: {orphans}; {seconds:.0f} s")
    not_blocked = [r for r in tried if not r.blocked]
    if not_blocked:
        print(f"NOT BLOCKED ({len(not_blocked)}):")
        for r in not_blocked:
            print(f"  [{r.finding}] {r.attack}: {r.observed}")
    else:
        print("every attack tried was blocked")
    for d in down:
        print(f"{d.name} stopped serving after: " + "; ".join(d.failed_after))
    write_json(path, {
        "attacks": [asdict(r) for r in b.rows],
        "totals": {"tried": len(tried), "blocked": len(blocked), "not_blocked": [r.attack for r in not_blocked],
                   "daemons_stopped_serving": len(down), "registry_rows_lost": reg.get("rows_lost"),
                   "processes_left_behind": orphans, "seconds": seconds},
        "daemons": {d.name: {"before": d.before, "after": d.after, "failed_after": d.failed_after}
                    for d in b.daemons},
        "registry_sigkill": reg, "tolerance": {"fds": FD_SLACK, "rss_mib": RSS_SLACK_MIB, "settle_s": SETTLE_S},
    })


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "attacks.json"))
    ap.add_argument("--set", choices=("all", "r8", "r18"), default="all", help="which review's attacks to run")
    args = ap.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="worldrt-attacks-") as tmp:
        root = Path(tmp)
        with ExitStack() as stack:
            bench = Bench(root, stack)
            try:
                run_all(bench, args.set)
            except Exception as exc:  # noqa: BLE001 - report what ran
                bench.rows.append(Row("-", "the bench itself", "runs to the end", f"stopped: {type(exc).__name__}: "
                                      f"{exc}", False))
                for d in bench.daemons:
                    if not d.after and d.daemon.proc is not None and d.daemon.proc.poll() is None:
                        d.after = {"fds": open_fds(d.pid), "rss_mib": rss_mib(d.pid)}
        for d in bench.daemons:
            d.before = d.before or {"fds": 0, "rss_mib": 0.0}
            d.after = d.after or {"fds": 0, "rss_mib": 0.0}
        orphans = len(reap(processes_under(str(root)), timeout_s=10))
    report(bench, time.monotonic() - started, orphans, args.json)


if __name__ == "__main__":
    main()
