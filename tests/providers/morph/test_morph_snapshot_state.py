"""What an instance's own state does to its Snapshot and its branches. User code is untrusted: each state here
once made branches die, hang, alias descriptors or lose files, or made a snapshot fail with the wrong answer."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support import run, status_of, wait_for
from worldrt.v1 import pb

pytestmark = pytest.mark.daemons


def branches(stub: Any, instance: str, count: int = 2) -> tuple[str, list[str]]:
    """A snapshot of ``instance`` and ``count`` branches of it, every one of which must come up."""
    snap = stub.Snapshot(pb.SnapshotRequest(instance_id=instance), timeout=30)
    reply = stub.Branch(pb.BranchRequest(snapshot_id=snap.snapshot_id, count=count), timeout=30)
    assert len(reply.instances) == count and not reply.errors, reply.errors
    return snap.snapshot_id, [i.instance_id for i in reply.instances]


def stop(stub: Any, *ids: str) -> None:
    for iid in ids:
        stub.Stop(pb.InstanceRef(instance_id=iid))


def value(stub: Any, iid: str, code: str) -> Any:
    result = run(stub, iid, code)
    assert not result.error, result.error
    return json.loads(result.value_json)


def do(stub: Any, iid: str, code: str) -> None:
    value(stub, iid, code + "\nNone")


# Defines in the instance a bounded wait for a file the test writes with a file request: not a run, so what the
# instance's threads print meanwhile is printed between runs.
WAIT_FOR_FILE = ("import os, time\ndef wait_for_file(name):\n    deadline = time.monotonic() + 60\n"
                 "    while not os.path.exists(name) and time.monotonic() < deadline:\n        time.sleep(0.005)\n")


def file_appears(stub: Any, iid: str, path: str) -> None:
    """Wait (bounded) until ``path`` is on the instance's disk, asking with file requests, not runs."""
    def there() -> bool:
        try:
            stub.StatFile(pb.StatFileRequest(instance_id=iid, path=path))
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND, exc.details()
            return False
        return True
    wait_for(there, 60, f"{path} on the instance's disk")


def test_hard_links_come_back_linked(stub, instance: str) -> None:
    do(stub, instance, "import os\nopen('a', 'w').write('one file')\nos.link('a', 'b')\nos.makedirs('d')\n"
                        "os.link('a', 'd/c')")
    snap, ids = branches(stub, instance)
    check = "import os\n[open('b').read(), os.stat('a').st_ino == os.stat('b').st_ino == os.stat('d/c').st_ino]"
    for iid in ids:
        assert value(stub, iid, check) == ["one file", True]
    stop(stub, *ids, snap)


def test_a_branchs_descriptors_never_take_a_number_the_instances_code_still_holds(stub, instance: str) -> None:
    """The instance's pipes and sockets are not carried: in a branch their numbers stay taken (by a placeholder
    that fails as a closed descriptor does), so closing them, or the garbage collector doing it, cannot close
    the branch's own channel, and a file it opens does not answer to an old number."""
    do(stub, instance, "import os, socket\npipes = [os.pipe() for _ in range(10)]\nsock = socket.socket()")
    snap, ids = branches(stub, instance, count=4)
    for iid in ids:
        assert value(stub, iid, "f = open('new.txt', 'w')\nf.fileno() not in [fd for pair in pipes for fd in pair]")
        closed = "for r, w in pipes:\n    os.close(r)\n    os.close(w)\nsock.close()\n1"
        assert value(stub, iid, closed) == 1
        assert value(stub, iid, "f.write('x')\nf.close()\nopen('new.txt').read()") == "x"
    stop(stub, *ids, snap)


def test_a_deleted_open_file_is_not_reopened_by_a_name_that_now_means_something_else(stub, instance: str) -> None:
    """A deleted file's descriptor fails as a closed one does in a branch (EBADF): its old name (now a FIFO,
    which would hang the branch on open, or another file, whose bytes it would read) is not opened."""
    do(stub, instance, "import os\nf = open('x', 'w+')\nf.write('mine')\nf.flush()\nos.unlink('x')\n"
                        "os.mkfifo('x (deleted)')\nopen('y', 'w').write('gone')\ng = open('y', 'r')\nos.unlink('y')\n"
                        "open('y (deleted)', 'w').write('OTHER')")
    snap, ids = branches(stub, instance)
    for iid in ids:
        use = ("import errno\nseen = []\nfor h in (f, g):\n    try:\n        h.seek(0)\n        seen.append(h.read())\n"
               "    except OSError as exc:\n        seen.append(errno.errorcode[exc.errno])\nseen")
        assert value(stub, iid, use) == ["EBADF", "EBADF"]
    stop(stub, *ids, snap)


def test_a_thread_printing_between_runs_does_not_break_the_channel(stub, instance: str) -> None:
    """Output of a thread of the instance between runs comes with the next run, never between answers."""
    do(stub, instance, WAIT_FOR_FILE + "import threading\nstop, first = threading.Event(), threading.Event()\n"
                        "def tick():\n    while not stop.is_set():\n        print('tick')\n        first.set()\n"
                        "        stop.wait(0.001)\n    wait_for_file('go')\n    print('between runs')\n"
                        "    open('printed', 'w').close()\n"
                        "threading.Thread(target=tick, daemon=True).start()\nfirst.wait(10)")
    for _ in range(3):
        snap, ids = branches(stub, instance)
        stop(stub, *ids, snap)
    names = [f"f{k}.txt" for k in range(20)]
    for name in names:
        stub.WriteFiles(pb.WriteFilesRequest(instance_id=instance, files=[pb.FileEntry(path=name, data=b"x")]))
    do(stub, instance, "stop.set()")
    stub.WriteFiles(pb.WriteFilesRequest(instance_id=instance, files=[pb.FileEntry(path="go", data=b"")]))
    file_appears(stub, instance, "printed")
    later = run(stub, instance, "7")
    assert later.value_json == "7" and "between runs\n" in later.stdout and not later.error
    assert run(stub, instance, "1 + 1").value_json == "2"


def test_an_error_after_a_runs_answer_is_not_a_second_answer(stub, instance: str) -> None:
    """User code takes /workspace's permissions away: moving back there after the run fails, which must not
    answer the next request (the snapshot's answer is its own)."""
    do(stub, instance, "import os\nos.chmod('/workspace', 0)")
    assert status_of(lambda: stub.Snapshot(pb.SnapshotRequest(instance_id=instance))) == grpc.StatusCode.ABORTED
    assert run(stub, instance, "os.chmod('/workspace', 0o755)\n2 + 2").value_json == "4"
    snap, ids = branches(stub, instance)
    stop(stub, *ids, snap)


def test_shared_memory_beyond_a_files_end_or_without_access_is_copied(stub, instance: str) -> None:
    """A shared mapping of a file cut short after it was mapped (reading past the end faults) and one with no
    access (PROT_NONE): the snapshot copies both without dying, and keeps what they hold."""
    do(stub, instance, "import mmap, os\nf = open('big', 'w+b')\nf.write(b'z' * (1 << 20))\nf.flush()\n"
                        "cut = mmap.mmap(f.fileno(), 1 << 20)\nos.truncate('big', 4096)\n"
                        "hidden = mmap.mmap(-1, 8192)\nhidden[:5] = b'hello'\nimport ctypes\n"
                        "address = ctypes.addressof(ctypes.c_char.from_buffer(hidden))\n"
                        "assert ctypes.CDLL(None).mprotect(ctypes.c_void_p(address), 8192, 0) == 0")
    snap, ids = branches(stub, instance)
    for iid in ids:
        check = ("ctypes.CDLL(None).mprotect(ctypes.c_void_p(address), 8192, mmap.PROT_READ | mmap.PROT_WRITE)\n"
                 "[bytes(cut[:3]).decode(), bytes(hidden[:5]).decode()]")
        assert value(stub, iid, check) == ["zzz", "hello"]
    stop(stub, *ids, snap)


MAPS_LINE = ("def maps_line(address):\n    for line in open('/proc/self/maps'):\n"
             "        if int(line.split('-')[0], 16) == address:\n            return line.split()[1], line.split()[-1]\n")


def test_a_file_of_the_image_mapped_shared_stays_shared_and_read_only_in_branches(stub, instance: str) -> None:
    """A snapshot copies no file of the image that its instance maps shared: no member can write one, so the
    branches keep mapping the file itself, and none can make the mapping writable (EACCES)."""
    do(stub, instance, "import ctypes, mmap, os\nimage = open(os.__file__, 'rb')\n"
                       "shared = mmap.mmap(image.fileno(), 4096, prot=mmap.PROT_READ)\n"
                       "address = next(int(line.split('-')[0], 16) for line in open('/proc/self/maps')\n"
                       "               if line.split()[-1] == os.__file__)\n"
                       + MAPS_LINE)
    assert value(stub, instance, "maps_line(address)") == ["r--s", value(stub, instance, "os.__file__")]
    snap, ids = branches(stub, instance)
    libc = "libc = ctypes.CDLL(None, use_errno=True)\n"
    writable = "libc.mprotect(ctypes.c_void_p(address), 4096, mmap.PROT_READ | mmap.PROT_WRITE), ctypes.get_errno()"
    same = "bytes(shared[:40]) == open(os.__file__, 'rb').read(40)"
    for iid in ids:
        assert value(stub, iid, f"{libc}[maps_line(address), [{writable}], {same}]") == [
            ["r--s", value(stub, iid, "os.__file__")], [-1, 13], True]
    stop(stub, *ids, snap)


def test_a_file_passes_for_the_image_only_if_it_is_the_mapped_file_on_a_read_only_mount(stub, instance: str) -> None:
    """The snapshot leaves a shared mapping as it is only when the path maps names opens the very file mapped
    (device and inode) on a read-only mount: a path that names an image file now, but was not the mapped file,
    is copied."""
    check = ("import os, sys\nfrom_image = sys.modules['_linux']._read_only_file\nopen('mine', 'wb').write(b'x')\n"
             "def backing(st, path):\n    return f'{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x} {st.st_ino}    "
             "{path}'.encode()\n"
             "image, mine = os.stat(os.__file__), os.stat('mine')\n"
             "[from_image(backing(image, os.__file__)), from_image(backing(mine, os.__file__)), "
             "from_image(backing(mine, os.path.abspath('mine'))), from_image(backing(image, os.__file__ + ' (deleted)'))]")
    assert value(stub, instance, check) == [True, False, False, False]


def test_shared_memory_too_big_to_copy_is_refused_with_the_reason(stub) -> None:
    iid = stub.Start(pb.StartRequest(limits=pb.Limits(memory_mb=256))).instance_id
    do(stub, iid, "import mmap\nbig = mmap.mmap(-1, 200 << 20)")
    with pytest.raises(grpc.RpcError) as info:
        stub.Snapshot(pb.SnapshotRequest(instance_id=iid))
    assert info.value.code() == grpc.StatusCode.ABORTED and "shared memory" in info.value.details()
    assert run(stub, iid, "len(big)").value_json == str(200 << 20)
    stop(stub, iid)


def test_a_disk_whose_archive_passes_its_limit_is_refused_and_the_instance_serves_on(stub) -> None:
    """A sparse file archives at its full size: past the disk's limit the daemon stops reading, and the Snapshot
    is refused as too large (not as a failure of the instance), which answers as before."""
    iid = stub.Start(pb.StartRequest(limits=pb.Limits(disk_mb=16))).instance_id
    do(stub, iid, "open('/workspace/sparse', 'wb').truncate(64 << 20)")
    with pytest.raises(grpc.RpcError) as info:
        stub.Snapshot(pb.SnapshotRequest(instance_id=iid), timeout=60)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit for this disk" in info.value.details()
    assert value(stub, iid, "import os\nos.path.getsize('/workspace/sparse')") == 64 << 20
    stop(stub, iid)


def test_a_branch_interrupts_a_run_past_its_timeout_and_reaps_its_children(stub, instance: str) -> None:
    """A snapshot ignores interrupts and lets the kernel reap its children; each branch sets both back: a run past
    its timeout is interrupted (the branch serves on, its state kept), and a child it starts can be waited for."""
    do(stub, instance, "kept = 'state'")
    snap, ids = branches(stub, instance)
    for iid in ids:
        with pytest.raises(grpc.RpcError) as info:
            run(stub, iid, "while True:\n    pass", timeout_ms=300)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "could not be interrupted" not in info.value.details()
        assert value(stub, iid, "import os\npid = os.fork()\nif pid == 0:\n    os._exit(7)\n"
                                "[kept, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])]") == ["state", 7]
    stop(stub, *ids, snap)


def test_files_in_a_read_only_folder_come_back(stub, instance: str) -> None:
    do(stub, instance, "import os\nos.makedirs('d/e')\nopen('d/f', 'w').write('in')\nos.chmod('d', 0o555)")
    snap, ids = branches(stub, instance)
    for iid in ids:
        assert value(stub, iid, "import os\n[sorted(os.listdir('d')), open('d/f').read(), oct(os.stat('d').st_mode)]") \
            == [["e", "f"], "in", "0o40555"]
    stop(stub, *ids, snap)


def test_a_fork_hook_that_never_returns_stops_its_instance_not_the_daemon(stub, morph) -> None:
    """The instance's code registers a fork hook that blocks: the Snapshot's caller gives up (its deadline);
    the instance, whose channel would answer out of step, is stopped with that reason, and its processes
    (the blocked fork among them) are gone. The daemon serves on."""
    iid = stub.Start(pb.StartRequest()).instance_id
    do(stub, iid, "import os, threading\nos.register_at_fork(after_in_child=lambda: threading.Event().wait())")
    members = morph_members(morph, iid)
    assert members
    with pytest.raises(grpc.RpcError) as info:
        stub.Snapshot(pb.SnapshotRequest(instance_id=iid), timeout=2)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    def gone() -> str:
        try:
            run(stub, iid, "1")
        except grpc.RpcError as exc:
            return exc.code() == grpc.StatusCode.FAILED_PRECONDITION and exc.details()
        return ""
    assert "did not answer snapshot" in wait_for(gone, 30, "the instance stopped")
    wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in members | morph_members(morph, iid)),
             30, "the instance's processes gone")
    other = stub.Start(pb.StartRequest()).instance_id
    assert run(stub, other, "1 + 1").value_json == "2"
    stop(stub, other)


def morph_members(morph: Any, iid: str) -> set[int]:
    """Pids in the instance's pids cgroup (in the daemon's cgroup folder)."""
    found: set[int] = set()
    for procs in Path("/sys/fs/cgroup").glob(f"pids/worldrt-*-{morph.proc.pid}/{iid}/cgroup.procs"):
        try:
            found.update(int(p) for p in procs.read_text().split())
        except OSError:
            continue
    return found


def test_posix_shared_memory_is_part_of_the_disk_a_branch_gets(stub, instance: str) -> None:
    """/dev/shm is on the instance's disk, as /workspace and /tmp are: a branch gets its own copy."""
    do(stub, instance, "open('/dev/shm/segment', 'wb').write(b'before')")
    snap, ids = branches(stub, instance)
    do(stub, instance, "open('/dev/shm/segment', 'wb').write(b'after')")
    for iid in ids:
        assert value(stub, iid, "open('/dev/shm/segment', 'rb').read().decode()") == "before"
    stop(stub, *ids, snap)


def test_files_and_folders_keep_their_permission_bits(stub, instance: str) -> None:
    do(stub, instance, "import os\nfor name, mode in (('open', 0o666), ('run', 0o777), ('own', 0o600)):\n"
                       "    open(name, 'w').close()\n    os.chmod(name, mode)\nos.mkdir('shared')\nos.chmod('shared', 0o1777)")
    snap, ids = branches(stub, instance)
    modes = "import os\n[oct(os.stat(n).st_mode & 0o7777) for n in ('open', 'run', 'own', 'shared')]"
    for iid in ids:
        assert value(stub, iid, modes) == ["0o666", "0o777", "0o600", "0o1777"]
    stop(stub, *ids, snap)


def test_a_snapshot_needs_free_descriptors_for_its_branches_and_says_so(stub) -> None:
    iid = stub.Start(pb.StartRequest()).instance_id
    do(stub, iid, "import resource, os\nresource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))\npipes = []\ntry:\n"
                  "    while True:\n        pipes.append(os.pipe())\nexcept OSError:\n    pass\n"
                  "for r, w in pipes[:2]:\n    os.close(r)\n    os.close(w)")
    with pytest.raises(grpc.RpcError) as info:
        stub.Snapshot(pb.SnapshotRequest(instance_id=iid))
    assert info.value.code() == grpc.StatusCode.ABORTED and "RLIMIT_NOFILE" in info.value.details()
    do(stub, iid, "for r, w in pipes[2:12]:\n    os.close(r)\n    os.close(w)")
    snap = stub.Snapshot(pb.SnapshotRequest(instance_id=iid))
    reply = stub.Branch(pb.BranchRequest(snapshot_id=snap.snapshot_id, count=3))
    assert len(reply.instances) == 3 and not reply.errors, reply.errors
    stop(stub, *(i.instance_id for i in reply.instances), snap.snapshot_id, iid)


def test_output_of_threads_between_runs_is_capped_and_leaves_the_run_its_own(stub, instance: str) -> None:
    """3 MiB, then a million small writes, printed by a thread between runs: the next run gets a capped part
    of it and a count of the rest, promptly, and all of its own output."""
    for k, burst in enumerate(("sys.stdout.write('T' * (3 << 20))",
                               "for _ in range(1_000_000):\n        sys.stdout.write('x\\n')")):
        do(stub, instance, WAIT_FOR_FILE + f"import sys, threading\ndef burst():\n    wait_for_file('go{k}')\n"
                                           f"    {burst}\n    open('done{k}', 'w').close()\n"
                                           "threading.Thread(target=burst).start()")
        stub.WriteFiles(pb.WriteFilesRequest(instance_id=instance, files=[pb.FileEntry(path=f"go{k}", data=b"")]))
        file_appears(stub, instance, f"done{k}")
        result = run(stub, instance, "print('MY OWN OUTPUT')", timeout_ms=10_000)
        assert not result.error and result.stdout.endswith("MY OWN OUTPUT\n"), result.error
        assert len(result.stdout) < 64 * 1024 and "characters printed between runs were dropped" in result.stderr


def test_a_file_open_in_dev_shm_is_reopened_on_the_branchs_disk(stub, instance: str) -> None:
    do(stub, instance, "seg = open('/dev/shm/seg', 'a')\nseg.write('a')\nseg.flush()")
    snap, ids = branches(stub, instance)
    for iid in ids:
        assert value(stub, iid, "seg.write('b')\nseg.flush()\nopen('/dev/shm/seg').read()") == "ab"
    stop(stub, *ids, snap)


def test_a_snapshot_at_the_process_limit_says_so(stub, instance: str) -> None:
    do(stub, instance, "import subprocess\nps = []\ntry:\n    while True:\n"
                       "        ps.append(subprocess.Popen(['sleep', '1000']))\nexcept OSError:\n    pass\n"
                       "last = ps.pop()\nlast.kill()\nlast.wait()")
    with pytest.raises(grpc.RpcError) as info:
        stub.Snapshot(pb.SnapshotRequest(instance_id=instance))
    assert info.value.code() == grpc.StatusCode.ABORTED and "process limit" in info.value.details()
    assert value(stub, instance, "for p in ps:\n    p.kill()\n    p.wait()\nlen(ps)") > 10
    snap, ids = branches(stub, instance)
    stop(stub, *ids, snap)
