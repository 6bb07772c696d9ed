"""The security review's attacks on the sandboxes, each against a real daemon: every one must fail and
leave the daemon serving, with its descriptors and memory back where they were.

Findings (issue 8): 1/1b host files through a snapshot, 2/3 descriptors sent over the agent channel,
4 workers that kill or stop their parent, 8 branches reading each other, 9 shared uids, 10 output
written straight to the channel, 11 memory and disk beyond the limits, 14 system calls seccomp must
deny, 15 a partial result too large for a trailer, 17 malformed input, 18 a shell job left running.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.support import KILL_EVERYTHING, ROOT, SYSCALLS, open_fds, rss_mib, run, settle, status_of, steady
from worldrt.providers import canonical_json, digest
from worldrt.providers.testing import ProviderDaemon, wait_serving
from worldrt.v1 import pb

pytestmark = pytest.mark.daemons

# Code that reaches the agent's own channel, as a hostile program in a sandbox can.
CHANNEL = "import __main__ as _agent, array, json, socket, struct\nchan = _agent.STATE.chan\n"


@pytest.fixture(scope="module")
def morph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderDaemon]:
    with ProviderDaemon("morph", state_dir=tmp_path_factory.mktemp("morph"), options={"pool_size": "1"}) as daemon:
        yield daemon


@pytest.fixture()
def stub(morph: ProviderDaemon):
    """The morph daemon's stub; after the attack it must still serve a fresh instance."""
    yield morph.stub
    iid = morph.stub.Start(pb.StartRequest()).instance_id
    assert run(morph.stub, iid, "40 + 2").value_json == "42"
    morph.stub.Stop(pb.InstanceRef(instance_id=iid))


@pytest.fixture()
def instance(stub) -> Iterator[str]:
    iid = stub.Start(pb.StartRequest()).instance_id
    yield iid
    try:
        stub.Stop(pb.InstanceRef(instance_id=iid))
    except grpc.RpcError:
        pass


BYTECODE = """
import importlib.util, sys
agent = sys.modules["__main__"]
with open(agent.__file__, "rb") as f:
    source = f.read()
with open(agent.__cached__, "rb") as f:
    data = f.read()
try:
    open(agent.__cached__, "r+b").close()
    writable = True
except OSError:
    writable = False
[data[:4] == importlib.util.MAGIC_NUMBER, int.from_bytes(data[4:8], "little"),
 data[8:16] == importlib.util.source_hash(source), writable]
"""


def test_the_agent_runs_from_bytecode_checked_against_its_source_and_out_of_the_sandboxs_reach(
        stub, instance: str) -> None:
    """The daemon compiles the agent once and copies its bytecode in beside the source: a checked-hash .pyc
    (flags 3) whose hash is the source's, so the interpreter inside uses it only for that source, and which
    the sandbox cannot rewrite for the next process that loads it."""
    result = run(stub, instance, BYTECODE)
    assert not result.error, result.error
    assert json.loads(result.value_json) == [True, 3, True, False]


# 1, 1b ---------------------------------------------------------------------------------------------
def test_a_snapshot_never_carries_host_files(tmp_path: Path) -> None:
    """Finding 1: the instance swapped its workspace for a symlink to /etc; Snapshot copied the host's
    /etc as root and the next Start read /etc/shadow."""
    with ProviderDaemon("modal", state_dir=tmp_path, options={"pool_size": "1"}) as modal:
        s = modal.stub
        iid = s.Start(pb.StartRequest()).instance_id
        plant = run(s, iid, "import os\nhere = os.getcwd()\nmoved = True\ntry:\n    os.rename(here, here + '.x')\n"
                            "except OSError:\n    moved = False\nos.symlink('/etc', 'etc')\nos.symlink('/', 'root')\n"
                            "moved")
        assert plant.value_json == "false", "the workspace itself cannot be renamed away"
        snap = s.Snapshot(pb.SnapshotRequest(instance_id=iid))
        copy = s.Start(pb.StartRequest(snapshot_id=snap.snapshot_id)).instance_id
        assert run(s, copy, "import os\nos.path.islink('etc'), os.readlink('etc')").value_json == '[true, "/etc"]'
        for path in ("etc/shadow", "/etc/shadow", f"root{tmp_path}/modal/modal.sock"):
            assert run(s, copy, f"open({path!r}).read()").exit_code == 1, path
        assert not list(tmp_path.rglob("shadow")) and not list(tmp_path.rglob("passwd"))


def test_no_host_path_appears_inside(stub, instance: str, morph: ProviderDaemon) -> None:
    """Finding 1b: /proc/self/mountinfo showed the state dir's host paths (which made ritual's key easy
    to aim at)."""
    mounts = json.loads(run(stub, instance, "open('/proc/self/mountinfo').read()").value_json)
    assert str(morph.state_dir) not in mounts and "/providers" not in mounts
    assert str(ROOT / "providers") not in mounts


# 2, 3 ----------------------------------------------------------------------------------------------
def test_descriptors_sent_over_the_channel_are_never_kept(stub, instance: str, morph: ProviderDaemon) -> None:
    """Findings 2 and 3: agent frames carried SCM_RIGHTS descriptors the daemon kept (10 frames: 20 to
    2,019 open fds), until it ran out of descriptors and every Start failed."""
    assert morph.proc is not None
    before = steady(lambda: open_fds(morph.proc.pid))  # once the pool's refill after the instance's Start is done
    flood = CHANNEL + (
        "import time\nfd = os.open('/dev/null', os.O_RDONLY)\nframe = json.dumps({'ev': 'stdout', 'd': 'x'}).encode()\n"
        "sent = 0\nfor _ in range(2000):\n    try:\n        chan.sendmsg([struct.pack('>I', len(frame)) + frame],\n"
        "            [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [fd] * 250))])\n        sent += 1\n"
        "    except OSError:\n        time.sleep(0.001)  # the kernel bounds descriptors in flight per sender\n"
        "    if sent == 100:\n        break\nsent")
    sent = run(stub, instance, "import os\n" + flood)
    assert sent.value_json == "100", sent.error + sent.stderr[-500:]
    assert settle(lambda: open_fds(morph.proc.pid), before + 9) < before + 10
    starts = [stub.Start(pb.StartRequest()).instance_id for _ in range(3)]
    for iid in starts:
        stub.Stop(pb.InstanceRef(instance_id=iid))
    assert settle(lambda: open_fds(morph.proc.pid), before + 5) <= before + 5


# 10, 17 --------------------------------------------------------------------------------------------
def test_output_written_straight_to_the_channel_is_capped_by_the_daemon(stub, morph: ProviderDaemon) -> None:
    """Finding 10: the 2 MiB cap was kept only inside; writing the channel directly sent 300 MiB and grew
    the daemon to 651 MB."""
    assert morph.proc is not None
    rss = rss_mib(morph.proc.pid)
    iid = stub.Start(pb.StartRequest()).instance_id
    flood = CHANNEL + ("frame = json.dumps({'ev': 'stdout', 'd': 'x' * (1 << 20)}).encode()\n"
                       "for _ in range(300):\n    chan.sendall(struct.pack('>I', len(frame)) + frame)\n")
    with pytest.raises(grpc.RpcError) as info:
        run(stub, iid, flood)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "output" in info.value.details()
    assert status_of(lambda: run(stub, iid, "1")) == grpc.StatusCode.FAILED_PRECONDITION
    assert rss_mib(morph.proc.pid) < rss + 64


@pytest.mark.parametrize("frame", [
    "struct.pack('>I', 1 << 30)",
    "struct.pack('>I', 9) + b'not json!'",
    "(lambda b: struct.pack('>I', len(b)) + b)(b'[' * 100000 + b']' * 100000)",
    "(lambda b: struct.pack('>I', len(b)) + b)(json.dumps({'ev': 'done', 'exit_code': 2 ** 100}).encode())",
    "(lambda b: struct.pack('>I', len(b)) + b)(json.dumps({'ev': 'done', 'value_json': 7}).encode())",
    "(lambda b: struct.pack('>I', len(b)) + b)(json.dumps(['a list']).encode())",
], ids=["huge-size", "not-json", "deep-json", "exit-code", "value-type", "not-object"])
def test_a_forged_frame_stops_the_instance_with_a_reason(stub, frame: str) -> None:
    """Finding 17: forged agent frames gave INTERNAL with a traceback."""
    iid = stub.Start(pb.StartRequest()).instance_id
    with pytest.raises(grpc.RpcError) as info:
        run(stub, iid, CHANNEL + f"chan.sendall({frame})\nimport time\ntime.sleep(5)")
    assert info.value.code() == grpc.StatusCode.ABORTED, info.value.details()
    assert "malformed" in info.value.details() or "frame" in info.value.details()
    assert status_of(lambda: run(stub, iid, "1")) == grpc.StatusCode.FAILED_PRECONDITION


def test_hostile_values_get_a_result_not_internal(stub, instance: str) -> None:
    """Finding 17: SystemExit(2**100) gave INTERNAL."""
    result = run(stub, instance, "raise SystemExit(2 ** 100)")
    assert result.exit_code == 1 and result.error.startswith("SystemExit: 12676506")
    deep = run(stub, instance, "eval('[' * 100000 + ']' * 100000)")
    assert deep.exit_code == 1 and deep.error


@pytest.mark.parametrize("provider,call", [
    ("morph", lambda s: s.Init(pb.ProviderConfig(json="[" * 100000 + "]" * 100000))),
    ("primeintellect", lambda s: s.Optimize(pb.OptimizeRequest(objective_code="def objective(p, s):\n    return 0",
                                                               space_json="[" * 100000 + "]" * 100000, budget=8))),
    ("ritual", lambda s: s.Verify(pb.VerifyRequest(mode=pb.ATTESTATION, attestation_json="{\"a\":" * 100000))),
])
def test_deeply_nested_json_is_invalid_argument(tmp_path: Path, provider: str, call) -> None:
    """Finding 17: 100k-deep JSON in Init.json, space_json or attestation_json gave INTERNAL."""
    with ProviderDaemon(provider, state_dir=tmp_path) as daemon:
        with pytest.raises(grpc.RpcError) as info:
            call(daemon.stub)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        assert "JSON" in info.value.details() or "nests" in info.value.details()
        assert daemon.stub.Capabilities(pb.CapabilitiesRequest()).provider_id == provider


# 4 -------------------------------------------------------------------------------------------------
def test_workers_that_stop_or_kill_their_parent_hurt_no_one_else(tmp_path: Path) -> None:
    """Finding 4: objective/step/infer code that SIGSTOPs or SIGKILLs its parent wedged primeintellect,
    gensyn and ritual for every later request while health stayed SERVING."""
    objective = KILL_EVERYTHING + "\ndef objective(params, seed):\n    _attack()\n    return 0.0\n"
    good = "def objective(params, seed):\n    return -abs(params['x'] - 3)\n"
    space = json.dumps({"x": list(range(6))})
    with ProviderDaemon("primeintellect", state_dir=tmp_path / "pi", options={"rollout_timeout_ms": "2000"}) as pi:
        for _ in range(2):
            try:
                pi.stub.Optimize(pb.OptimizeRequest(objective_code=objective, space_json=space, budget=16, seed=1),
                                 timeout=30)
            except grpc.RpcError as exc:
                assert exc.code() != grpc.StatusCode.INTERNAL, exc.details()
        reply = pi.stub.Optimize(pb.OptimizeRequest(objective_code=good, space_json=space, budget=32, seed=1),
                                 timeout=30)
        assert json.loads(reply.best_json) == {"x": 3}

    step = KILL_EVERYTHING + "\ndef step(state, t):\n    _attack()\n    return {'x': state['x'] + 1}\n"
    honest = [digest({"x": i}) for i in range(3)]
    forged = [digest({"x": 0}), digest({"x": 5}), digest({"x": 6})]
    claims = [pb.Claim(claimant="a", step_digests=honest), pb.Claim(claimant="b", step_digests=forged)]
    with ProviderDaemon("gensyn", state_dir=tmp_path / "gensyn", options={"step_timeout_ms": "2000"}) as gensyn:
        for program in (step, step, "def step(state, t):\n    return {'x': state['x'] + 1}\n"):
            request = pb.VerifyRequest(program_code=program, start_state_json=canonical_json({"x": 0}), steps=2,
                                       mode=pb.REFEREE, claims=claims)
            try:
                reply = gensyn.stub.Verify(request, timeout=30)
            except grpc.RpcError as exc:
                assert exc.code() != grpc.StatusCode.INTERNAL, exc.details()
        assert list(reply.honest) == ["a"]

    infer = KILL_EVERYTHING + "\ndef infer(input, seed):\n    _attack()\n    return 1\n"
    with ProviderDaemon("ritual", state_dir=tmp_path / "ritual", options={"reexecute_timeout_ms": "2000"}) as ritual:
        for _ in range(2):
            result = ritual.stub.Execute(pb.ExecuteRequest(code=infer, input_json="1", seed=1), timeout=30)
            assert result.exit_code != 0 or result.attestation_json
        ok = ritual.stub.Execute(pb.ExecuteRequest(code="def infer(input, seed):\n    return input + 1",
                                                   input_json="1", seed=1), timeout=30)
        assert ok.exit_code == 0 and json.loads(ok.value_json) == 2
        wait_serving(ritual.address, timeout_s=5)


# 8, 9 ----------------------------------------------------------------------------------------------
def test_branches_of_one_snapshot_share_nothing(stub, instance: str) -> None:
    """Finding 8: branches shared /tmp and could read and write each other's workspaces; appending to a
    sibling's capture file injected text into its next Execute; a sibling could SIGKILL another."""
    run(stub, instance, "open('from_parent.txt', 'w').write('p')\nopen('/tmp/parent.tmp', 'w').write('p')")
    snap = stub.Snapshot(pb.SnapshotRequest(instance_id=instance))
    a, b = (i.instance_id for i in stub.Branch(pb.BranchRequest(snapshot_id=snap.snapshot_id, count=2)).instances)
    assert run(stub, a, "open('from_parent.txt').read() + open('/tmp/parent.tmp').read()").value_json == '"pp"'
    b_pid = json.loads(run(stub, b, "import os\nopen('mine.txt', 'w').write('b')\nopen('/tmp/b.tmp', 'w').write('b')\n"
                                    "os.getpid()").value_json)
    probe = (f"import os, signal, glob\nseen = sorted(os.listdir('/tmp')) + sorted(os.listdir('.'))\n"
             f"procs = sorted(p for p in os.listdir('/proc') if p.isdigit())\n"
             f"for f in glob.glob('/tmp/.worldrt-*.out'):\n    open(f, 'a').write('INJECTED')\n"
             f"try:\n    os.kill({b_pid}, signal.SIGKILL)\n    killed = True\nexcept OSError:\n    killed = False\n"
             f"[seen, procs, killed, os.getpid()]")
    seen, procs, killed, a_pid = json.loads(run(stub, a, probe).value_json)
    assert "b.tmp" not in seen and "mine.txt" not in seen and "parent.tmp" in seen
    assert procs == [str(a_pid)] and not killed
    after = run(stub, b, "print('still me')\nopen('mine.txt').read()")
    assert after.value_json == '"b"' and after.stdout == "still me\n" and "INJECTED" not in after.stdout
    run(stub, a, "open('/tmp/parent.tmp', 'w').write('changed by a')")
    assert run(stub, b, "open('/tmp/parent.tmp').read()").value_json == '"p"'
    assert run(stub, instance, "open('/tmp/parent.tmp').read()").value_json == '"p"'
    for iid in (a, b, snap.snapshot_id):
        stub.Stop(pb.InstanceRef(instance_id=iid))


def test_shared_memory_of_an_instance_is_copied_not_shared_by_its_snapshot_and_branches(stub, instance: str) -> None:
    """Memory an instance maps shared (anonymous, or a file of its disk) is a private copy in its snapshot and
    in each branch: a write by one is not seen by another, so shared memory is no channel between them."""
    run(stub, instance, "import mmap\nanon = mmap.mmap(-1, 8192)\nanon[:1] = b'p'\n"
                        "open('shared.bin', 'wb').write(b'p' * 4096)\nf = open('shared.bin', 'r+b')\n"
                        "filed = mmap.mmap(f.fileno(), 4096)\nro = mmap.mmap(f.fileno(), 4096, prot=mmap.PROT_READ)\n"
                        "anon[4096:4097] = b'p'")
    snap = stub.Snapshot(pb.SnapshotRequest(instance_id=instance))
    reply = stub.Branch(pb.BranchRequest(snapshot_id=snap.snapshot_id, count=2))
    assert not reply.errors, reply.errors
    a, b = (i.instance_id for i in reply.instances)
    read = "[bytes(anon[:1] + anon[4096:4097]).decode(), bytes(filed[:1]).decode(), bytes(ro[:1]).decode()]"
    run(stub, instance, "anon[:1] = b'i'\nanon[4096:4097] = b'i'\nfiled[:1] = b'i'\nfiled.flush()")
    assert json.loads(run(stub, a, read).value_json) == ["pp", "p", "p"]
    run(stub, a, "anon[:1] = b'a'\nfiled[:1] = b'a'")
    assert json.loads(run(stub, b, read).value_json) == ["pp", "p", "p"]
    assert json.loads(run(stub, instance, read).value_json) == ["ii", "i", "i"]
    for iid in (a, b, snap.snapshot_id):
        stub.Stop(pb.InstanceRef(instance_id=iid))


def test_every_live_member_has_a_uid_of_its_own(stub, instance: str, tmp_path: Path) -> None:
    """Finding 9: uids wrapped after 256 sandboxes (44 of 300 live instances shared one); one instance
    put a key in the user keyring and another read it."""
    snap = stub.Snapshot(pb.SnapshotRequest(instance_id=instance))
    members = [instance]
    for _ in range(2):
        reply = stub.Branch(pb.BranchRequest(snapshot_id=snap.snapshot_id, count=150))
        assert not reply.errors, reply.errors[:2]
        members += [i.instance_id for i in reply.instances]
    uids = [int(run(stub, iid, "import os; os.getuid()").value_json) for iid in members]
    with ProviderDaemon("modal", state_dir=tmp_path, options={"pool_size": "1"}) as modal:
        others = [modal.stub.Start(pb.StartRequest()).instance_id for _ in range(3)]
        uids += [int(run(modal.stub, iid, "import os; os.getuid()").value_json) for iid in others]
    assert len(set(uids)) == len(uids) == 1 + 300 + 3
    keyring = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n" \
              "r = libc.syscall(248, b'user', b'k', b'secret', 6, -4)\n(r, ctypes.get_errno())"
    assert json.loads(run(stub, members[1], keyring).value_json) == [-1, 1]  # add_key: EPERM
    stub.Stop(pb.InstanceRef(instance_id=snap.snapshot_id))
    for iid in members[1:]:
        stub.Stop(pb.InstanceRef(instance_id=iid))


# 11 ------------------------------------------------------------------------------------------------
def test_memory_is_bounded_for_the_instance_not_the_process(stub, morph: ProviderDaemon) -> None:
    """Finding 11: RLIMIT_AS per process let 6 forks use 5.1 GiB under a 1 GiB limit."""
    iid = stub.Start(pb.StartRequest(limits=pb.Limits(memory_mb=256, disk_mb=64))).instance_id
    hog = ("import os, time\nkids = []\nfor _ in range(6):\n    pid = os.fork()\n    if pid == 0:\n"
           "        try:\n            b = bytearray(200 * 2**20)\n            b[::4096] = b'x' * len(b[::4096])\n"
           "            time.sleep(3)\n        finally:\n            os._exit(0)\n    kids.append(pid)\n"
           "for pid in kids:\n    os.waitpid(pid, 0)\n'done'")
    try:
        run(stub, iid, hog, timeout_ms=20000)
    except grpc.RpcError as exc:
        assert exc.code() in (grpc.StatusCode.ABORTED, grpc.StatusCode.DEADLINE_EXCEEDED), exc.details()
    assert morph.proc is not None
    peaks = [int(p.read_text()) for p in Path("/sys/fs/cgroup").glob(
        f"memory/worldrt-morph-{morph.proc.pid}/{iid}/memory.max_usage_in_bytes")]
    assert peaks and max(peaks) <= (256 + 64) * 2**20
    try:
        stub.Stop(pb.InstanceRef(instance_id=iid))
    except grpc.RpcError:
        pass


def test_the_disk_is_bounded_and_not_on_the_host(stub, morph: ProviderDaemon) -> None:
    """Finding 11: RLIMIT_FSIZE per file let 20 files put 5 GiB on the host disk."""
    iid = stub.Start(pb.StartRequest(limits=pb.Limits(disk_mb=64))).instance_id
    fill = ("written = 0\ntry:\n    for i in range(20):\n        with open(f'f{i}', 'wb') as f:\n"
            "            f.write(b'x' * (16 * 2**20))\n        written += 1\nexcept OSError as exc:\n"
            "    error = exc.errno\nwritten, error")
    written, error = json.loads(run(stub, iid, fill).value_json)
    assert written <= 4 and error == 28  # ENOSPC within the 64 MiB quota
    assert sum(p.stat().st_size for p in morph.state_dir.rglob("*") if p.is_file()) < 16 * 2**20
    assert run(stub, iid, "import os; os.remove('f0'); open('g', 'w').write('room again')").value_json == "10"
    stub.Stop(pb.InstanceRef(instance_id=iid))


@pytest.mark.parametrize("limits", [pb.Limits(memory_mb=65536 * 4), pb.Limits(processes=4096),
                                    pb.Limits(cpu_s=86400), pb.Limits(disk_mb=10**7)])
def test_limits_above_the_machine_are_refused(stub, limits: pb.Limits) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.Start(pb.StartRequest(limits=limits))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "this machine" in info.value.details()


# 14 ------------------------------------------------------------------------------------------------
@pytest.mark.skipif(platform.machine() != "x86_64", reason="the syscall numbers in this test are x86_64's")
@pytest.mark.parametrize("where", ["instance", "branch"])
def test_seccomp_denies_namespaces_keyrings_io_uring_bpf_ptrace_and_modules(stub, instance: str, where: str) -> None:
    """Finding 14: unshare(user|mount), keyctl, add_key and io_uring_setup all worked inside."""
    target = instance
    if where == "branch":
        snap = stub.Snapshot(pb.SnapshotRequest(instance_id=instance))
        target = stub.Branch(pb.BranchRequest(snapshot_id=snap.snapshot_id, count=1)).instances[0].instance_id
    code = ("import ctypes, json\nlibc = ctypes.CDLL(None, use_errno=True)\nout = {}\n"
            f"for name, (nr, arg) in {SYSCALLS!r}.items():\n"
            "    ctypes.set_errno(0)\n    r = libc.syscall(nr, ctypes.c_long(arg), 0, 0, 0, 0)\n"
            "    out[name] = (r, ctypes.get_errno())\nout")
    results = json.loads(run(stub, target, code).value_json)
    for name, (result, errno_) in results.items():
        assert result == -1 and errno_ in (1, 38), (name, result, errno_)  # EPERM, or ENOSYS for clone3's kin
    shell = run(stub, target, "unshare --user --map-root-user true; echo $?", language="shell")
    assert shell.stdout.strip() != "0"


# 15, 18 --------------------------------------------------------------------------------------------
def test_a_timed_out_run_with_much_output_reports_the_timeout(stub, instance: str) -> None:
    """Finding 15: a failed Execute with more than 16 KB of output put its partial result in a trailer
    over gRPC's metadata limit: the client saw RESOURCE_EXHAUSTED instead of DEADLINE_EXCEEDED."""
    with pytest.raises(grpc.RpcError) as info:
        run(stub, instance, "print('y' * 100000)\nwhile True:\n    pass", timeout_ms=500)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    partial = pb.ExecutionResult.FromString(dict(info.value.trailing_metadata())["x-worldrt-partial-result-bin"])
    assert partial.stdout.startswith("yyyy") and "more characters not shown" in partial.stdout
    assert len(partial.SerializeToString()) < 4096


def test_a_job_left_running_does_not_hold_the_run(stub, instance: str) -> None:
    """Finding 18: a shell ``cmd &`` that keeps stdout open blocked Execute until its timeout."""
    started = time.monotonic()
    result = run(stub, instance, "sleep 30 & echo started", language="shell", timeout_ms=20000)
    assert result.stdout == "started\n" and result.exit_code == 0
    assert time.monotonic() - started < 5


def test_branches_of_branches_nest_to_the_kernels_depth_and_no_further(stub, instance: str) -> None:
    """Each generation of branches is a user namespace deeper; the 33rd is refused with the reason."""
    iid = instance
    run(stub, iid, "lineage = []")
    for generation in range(1, 33):
        snap = stub.Snapshot(pb.SnapshotRequest(instance_id=iid))
        iid = stub.Branch(pb.BranchRequest(snapshot_id=snap.snapshot_id, count=1)).instances[0].instance_id
        run(stub, iid, f"lineage.append({generation})")
    assert json.loads(run(stub, iid, "lineage").value_json) == list(range(1, 33))
    last = stub.Snapshot(pb.SnapshotRequest(instance_id=iid))
    with pytest.raises(grpc.RpcError) as info:
        stub.Branch(pb.BranchRequest(snapshot_id=last.snapshot_id, count=1))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "32" in info.value.details()
