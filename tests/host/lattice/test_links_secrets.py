"""Links on the lattice name secrets by key, and a host reads only a regular, capped file of its own for a key.

The attacks are made as someone holding the lattice's credentials would make them: a bare nats-py client
writing link values into the links bucket (the path of a device, a FIFO, a key that is a path), plus the
files an operator might get wrong in a host's secrets folder (a symbolic link to /dev/zero, a FIFO, a huge
file, a one-byte secret). Each time, the real host (``worldrt host serve --lattice``) refuses that link
with a log line, stays small and goes on applying the links that follow. The host runs under an
RLIMIT_DATA of 3 GiB, so that a version that reads /dev/zero fails alone instead of eating the machine.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path

import grpc
import pytest

from tests.host.lattice.loopback import LoopbackLattice, Served
from tests.support import HostProcess, cli, rss_mib, wait_for
from worldrt.host.lattice._wire import link_key, links_bucket
from worldrt.v1 import host_pb, pb

pytestmark = [pytest.mark.daemons, pytest.mark.timeout(300)]
SECRET = "sk-lattice-secret-0123"


class World:
    def __init__(self, lattice: LoopbackLattice, host: Served, root: Path) -> None:
        self.lattice, self.host, self.root = lattice, host, root
        self.client = lattice.client()
        self.secrets = host.home / "secrets"
        self.secrets.mkdir(mode=0o700, exist_ok=True)
        self._probes = count()

    def put_raw(self, link_id: str, document: dict[str, object]) -> None:
        """What an attacker with the lattice's credentials can do: write any value into the links bucket."""
        async def put() -> None:
            kv = await self.client.js.key_value(links_bucket(self.client.name))
            await kv.put(link_key(link_id), json.dumps(document).encode())
        self.client.run(put())

    def probe(self) -> str:
        """Put a plain link after whatever came before, and wait until the host has it: the host's watcher
        applies entries in order, so everything before it has been dealt with."""
        link_id = f"probe{next(self._probes)}/generator/default"
        self.put_raw(link_id, _doc(link_id))
        wait_for(lambda: link_id in self.host.links(), 30, f"the host applying {link_id} (its watcher is stuck)")
        return link_id


def _doc(link_id: str, **extra: object) -> dict[str, object]:
    source = link_id.split("/", maxsplit=1)[0]
    return {"link_id": link_id, "source_component": source, "interfaces": ["generator"], "target_provider": "modal",
            "name": "default", "values": {}, **extra}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("links")
    lattice = LoopbackLattice(root)
    try:
        host = lattice.host(root / "h1", "h1", data_limit=3 << 30)
        yield World(lattice, host, root)
        assert host.alive(), host.log()[-4000:]
        assert "Traceback" not in host.log(), host.log()[-4000:]
    finally:
        lattice.close()


def _fifo(world: World, where: Path) -> str:
    path = where / "fifo"
    if not path.exists():
        os.mkfifo(path, 0o600)
    return str(path)


def _symlink_to_zero(world: World) -> str:
    path = world.secrets / "zero"
    if not path.is_symlink():
        path.symlink_to("/dev/zero")
    return "zero"


def _huge(world: World) -> str:
    path = world.secrets / "huge"
    with open(path, "wb") as f:
        f.truncate(1 << 30)  # sparse: 1 GiB to read, nothing on disk
    return "huge"


def _short(world: World) -> str:
    (world.secrets / "short").write_text("a\n")
    os.chmod(world.secrets / "short", 0o600)
    return "short"


# (attack, the link's secrets as the attacker writes them, what the host's refusal says)
ATTACKS: list[tuple[str, Callable[[World], dict[str, object]], str]] = [
    ("a path to /dev/zero, as links of older versions named files",
     lambda w: {"secret_files": {"api": "/dev/zero"}}, "names its secrets by file path"),
    ("a path to a FIFO, as links of older versions named files",
     lambda w: {"secret_files": {"api": _fifo(w, w.root)}}, "names its secrets by file path"),
    ("a key that is a path to /dev/zero", lambda w: {"secret_keys": {"api": "../../../../../dev/zero"}},
     "never a path"),
    ("a key whose file is a symbolic link to /dev/zero", lambda w: {"secret_keys": {"api": _symlink_to_zero(w)}},
     "is a symbolic link, not a regular file"),
    ("a key whose file is a FIFO", lambda w: {"secret_keys": {"api": Path(_fifo(w, w.secrets)).name}},
     "is a FIFO, not a regular file"),
    ("a key whose file holds 1 GiB", lambda w: {"secret_keys": {"api": _huge(w)}}, "a secret file holds at most 65536"),
    ("a key whose file holds a one-byte secret", lambda w: {"secret_keys": {"api": _short(w)}},
     "a secret needs at least 8"),
]


@pytest.mark.parametrize(("attack", "secrets", "says"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_a_link_whose_secret_is_no_small_regular_file_of_the_hosts_own_is_refused_and_the_host_goes_on(
        world: World, attack: str, secrets: Callable[[World], dict[str, object]], says: str) -> None:
    link_id = f"evil{ATTACKS.index(next(a for a in ATTACKS if a[0] == attack))}/generator/default"
    world.put_raw(link_id, _doc(link_id, **secrets(world)))
    world.probe()
    assert world.host.alive(), world.host.log()[-4000:]
    assert link_id not in world.host.links()
    refusal = [line for line in world.host.log().splitlines() if "refusing the link" in line and link_key(link_id) in line]
    assert refusal and says in refusal[-1], world.host.log()[-3000:]
    assert rss_mib(world.host.proc.pid) < 1024


def test_a_link_re_put_with_a_bad_secret_drops_the_version_it_replaces(world: World) -> None:
    (world.secrets / "good-key").write_text(SECRET + "\n")
    link_id = "replaced/generator/default"
    world.put_raw(link_id, _doc(link_id, secret_keys={"api": "good-key"}))
    wait_for(lambda: world.host.links().get(link_id) == {"api": "<redacted>"}, 30, "the host reading good-key")
    world.put_raw(link_id, _doc(link_id, secret_keys={"api": _short(world)}))
    world.probe()
    assert link_id not in world.host.links()


def test_a_lattice_link_names_each_secret_by_a_key_each_host_reads_from_its_own_folder(world: World) -> None:
    (world.secrets / "modal-key").write_text(SECRET + "\n")
    os.chmod(world.secrets / "modal-key", 0o600)
    home = world.root / "operator"
    home.mkdir(exist_ok=True)
    done = world.lattice.cli(home, "link", "put", "generator=modal", "--source", "keyed", *world.lattice.flags(),
                             "--secret", "api_key=modal-key")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: world.host.links().get("keyed/generator/default") == {"api_key": "<redacted>"}, 30,
             "the host reading its own file of modal-key")
    listed = world.lattice.cli(home, "link", "list", *world.lattice.flags(), "--json")
    assert listed.returncode == 0, listed.stderr
    assert SECRET not in listed.stdout
    keyed = next(x for x in json.loads(listed.stdout)["links"] if x["link_id"] == "keyed/generator/default")
    assert keyed["secret_keys"] == {"api_key": "modal-key"} and "secret_files" not in keyed
    # A key this host has no file for: the link is used without that secret here, and the host says so.
    done = world.lattice.cli(home, "link", "put", "generator=modal", "--source", "elsewhere", *world.lattice.flags(),
                             "--secret", "api_key=only-on-b")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: world.host.links().get("elsewhere/generator/default") == {}, 30, "the link without its secret")
    assert "only-on-b does not exist" in world.host.log()
    # A path is never what a lattice link names.
    refused = world.lattice.cli(home, "link", "put", "generator=modal", "--source", "pathed", *world.lattice.flags(),
                                "--secret-file", f"api_key={world.secrets / 'modal-key'}")
    assert refused.returncode != 0 and "never a path" in refused.stderr, refused.stderr
    refused = world.lattice.cli(home, "link", "put", "generator=modal", "--source", "pathed", *world.lattice.flags(),
                                "--secret", "api_key=../modal-key")
    assert refused.returncode != 0 and "never a path" in refused.stderr, refused.stderr


def test_a_secret_shorter_than_8_bytes_is_refused_when_the_link_is_put(tmp_path: Path) -> None:
    (tmp_path / "short").write_text("a\n")
    put = cli(tmp_path, "link", "put", "generator=modal", "--source", "caller", "--secret-file",
              f"api={tmp_path / 'short'}")
    assert put.returncode != 0 and "at least 8" in put.stderr, put.stderr
    (tmp_path / "host").mkdir()
    host = HostProcess(tmp_path / "host")
    try:
        for link in (pb.LinkConfig(source_component="caller", interfaces=["generator"], target_provider="modal",
                                   secrets={"api": "a"}),
                     pb.LinkConfig(source_component="caller", interfaces=["generator"], target_provider="modal",
                                   values={"token": "abc"})):
            with pytest.raises(grpc.RpcError) as failed:
                host.stub.PutLink(link, timeout=30)
            assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
            assert "at least 8" in failed.value.details()  # type: ignore[attr-defined]
        assert list(host.stub.ListLinks(host_pb.ListLinksRequest(), timeout=30).links) == []
        for name in ("fifo", "zero"):
            if name == "fifo":
                os.mkfifo(tmp_path / name)
            else:
                (tmp_path / name).symlink_to("/dev/zero")
            put = cli(tmp_path / "host", "link", "put", "generator=modal", "--source", "caller", "--secret-file",
                      f"api={tmp_path / name}", timeout=60)
            assert put.returncode != 0 and "not a regular file" in put.stderr, put.stderr
        assert host.stop() == 0
    finally:
        host.kill()
