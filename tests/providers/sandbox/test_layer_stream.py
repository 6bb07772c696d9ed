"""The layer stream as a hostile build sandbox may write it, fed to the daemon's own reader (``_layers``)
on the real file system: every entry is made relative to the staging folder without following a link,
what an image may not hold is refused with the path and why, modes are sanitized, and the digest is the
tree's, whatever order the entries came in. Beside the staging folder sits a victim folder: nothing may
ever land there. (The same attacks through a real build: test_image_build_attacks.py.)"""

from __future__ import annotations

import io
import os
import stat
import struct
import sys
from pathlib import Path

import pytest

from worldrt import errors as err
from worldrt.providers.sandbox import _images, _layers

pytestmark = pytest.mark.pure
PY = f"python{sys.version_info.major}.{sys.version_info.minor}"
SITE = f"lib/{PY}/site-packages"
_HEADER = struct.Struct(">cIQHH")


def rec(kind: bytes, path: str | bytes, target: str | bytes = b"", mode: int = 0o644, data: bytes = b"",
        size: int | None = None) -> bytes:
    raw = path.encode() if isinstance(path, str) else path
    link = target.encode() if isinstance(target, str) else target
    return _HEADER.pack(kind, mode, len(data) if size is None else size, len(raw), len(link)) + raw + link + data


END = rec(b"E", b"")


@pytest.fixture()
def layer(tmp_path: Path) -> Path:
    folder = tmp_path / "staging"
    folder.mkdir(mode=0o700)
    _images.make_skeleton(folder)
    (tmp_path / "victim").mkdir()
    return folder


def unpack(layer: Path, *records: bytes, limit: int = 1 << 20, end: bool = True) -> _layers.Unpacked:
    return _layers.unpack(io.BytesIO(b"".join(records) + (END if end else b"")), layer, limit)


def refused(layer: Path, *records: bytes, why: str = "") -> str:
    with pytest.raises(_layers.LayerRefused) as info:
        unpack(layer, *records)
    assert why in info.value.message, info.value.message
    assert isinstance(info.value, err.FailedPrecondition)
    assert os.listdir(layer.parent / "victim") == []
    return info.value.message


def tree(layer: Path) -> dict[str, str]:
    found = {}
    for folder, dirs, names in os.walk(layer):
        for name in dirs + names:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            kind = "l" if stat.S_ISLNK(st.st_mode) else "d" if stat.S_ISDIR(st.st_mode) else "f"
            found[os.path.relpath(path, layer)] = f"{kind} {stat.S_IMODE(st.st_mode):o}" + (
                f" -> {os.readlink(path)}" if kind == "l" else "")
    return found


@pytest.mark.parametrize("path, why", [
    ("/etc/cron.d/x", "absolute path"),
    (f"{SITE}/../../../../etc/x", "'..' part"),
    ("lib/./x", "'.'"),
    ("lib//x", "empty"),
    ("lib/x/", "empty"),
    ("files/x", "outside lib/ and bin/"),
    ("pyvenv.cfg", "outside lib/ and bin/"),
    ("lib/" + "a/" * 60 + "x", "folders deep"),
    ("lib/" + "d" * 256, "a name of 256 bytes"),
    ("lib/" + ("d" * 240 + "/") * 5 + "x", "bytes long"),
])
def test_names_an_image_may_not_have_are_refused(layer: Path, path: str, why: str) -> None:
    for kind in (b"f", b"d", b"l"):
        refused(layer, rec(kind, path, b"x" if kind == b"l" else b""), why=why)


def test_names_that_are_not_utf8_or_hold_nul_are_refused(layer: Path) -> None:
    refused(layer, rec(b"f", f"{SITE}/\udcff".encode("utf-8", "surrogateescape")), why="not UTF-8")
    refused(layer, rec(b"f", f"{SITE}/\ud800".encode("utf-8", "surrogatepass")), why="not UTF-8")
    refused(layer, rec(b"f", f"{SITE}/a\0b".encode()), why="NUL")
    refused(layer, rec(b"l", f"{SITE}/a", b"\xff"), why="not UTF-8")


def test_a_header_that_claims_more_than_any_path_is_refused_before_it_is_read(layer: Path) -> None:
    claim = _HEADER.pack(b"f", 0o644, 0, 65535, 0)
    refused(layer, claim, why="longer than any")


@pytest.mark.parametrize("target", ["/etc", "/etc/passwd", "../../../../etc", "../../../../../../../../tmp",
                                    "a/../../../../../x", "zchain/s/up/../../../../../../../etc"])
def test_links_out_of_the_layer_are_refused(layer: Path, target: str) -> None:
    refused(layer, rec(b"l", f"{SITE}/evil", target), why="link")
    assert not os.path.lexists(layer / SITE / "evil")
    refused(layer, rec(b"l", "lib/evil", target.replace("../../../../", "../../", 1)), why="link")


def test_links_inside_are_kept_normalized_so_the_kernel_resolves_what_was_checked(layer: Path) -> None:
    unpack(layer,
           rec(b"d", f"{SITE}/pkg"),
           rec(b"l", f"{SITE}/alias", "pkg"),
           rec(b"l", f"{SITE}/py", "../../../bin/python"),
           rec(b"l", f"{SITE}/chain", "zz/s/s/up/../../../../../../../bin"),
           rec(b"l", "bin/tool", "../lib/x/../" + PY))
    got = tree(layer)
    assert got[f"{SITE}/alias"] == "l 777 -> pkg"
    assert got[f"{SITE}/py"] == "l 777 -> ../../../bin/python"
    assert got[f"{SITE}/chain"] == "l 777 -> ../../../bin"  # never the chain the sandbox wrote
    assert got["bin/tool"] == f"l 777 -> ../lib/{PY}"


def test_nothing_is_written_through_a_link_whatever_it_points_at(layer: Path) -> None:
    """The stream the swap attack makes: ``swap`` sent as a link, then ``swap/pwned.txt``."""
    victim = layer.parent / "victim"
    for target in ("pkg", "../../..", f"../../../../../{os.path.relpath(victim, layer)}"):
        layer_copy = layer.parent / f"staging-{len(target)}"
        layer_copy.mkdir()
        _images.make_skeleton(layer_copy)
        records = [rec(b"d", f"{SITE}/pkg"), rec(b"l", f"{SITE}/swap", target),
                   rec(b"f", f"{SITE}/swap/pwned.txt", data=b"pwned")]
        with pytest.raises(_layers.LayerRefused) as info:
            unpack(layer_copy, *records)
        assert "goes through" in info.value.message or "outside the image" in info.value.message
        assert os.listdir(victim) == [] and os.listdir(layer_copy / SITE / "pkg") == []
    refused(layer, rec(b"l", f"{SITE}/swap", "pkg"), rec(b"d", f"{SITE}/swap/inner"), why="goes through")
    refused(layer, rec(b"f", f"{SITE}/file", data=b"x"), rec(b"f", f"{SITE}/file/x"), why="goes through")


def test_what_the_image_keeps_itself_and_entries_sent_twice_are_refused(layer: Path) -> None:
    for records in ([rec(b"f", "bin/python", data=b"#!/bin/sh\n")], [rec(b"l", "bin/python3", "/bin/sh")],
                    [rec(b"l", f"lib/{PY}", "../bin")], [rec(b"f", f"{SITE}", data=b"")],
                    [rec(b"f", f"{SITE}/a", data=b"1"), rec(b"f", f"{SITE}/a", data=b"2")],
                    [rec(b"d", f"{SITE}/a"), rec(b"l", f"{SITE}/a", "b")]):
        refused(layer, *records)
    assert os.readlink(layer / "bin" / "python") == _images.base_executable()
    unpack(layer, rec(b"d", "lib"), rec(b"d", f"lib/{PY}"), rec(b"d", SITE))  # folders it has already: fine


@pytest.mark.parametrize("kind", [b"o"])
def test_devices_fifos_and_sockets_are_refused(layer: Path, kind: bytes) -> None:
    refused(layer, rec(kind, f"{SITE}/fifo", mode=0o644 | stat.S_IFIFO & 0o7777), why="a device, a fifo or a socket")
    refused(layer, rec(b"x", f"{SITE}/what"), why="unknown kind")
    refused(layer, rec(b"d", f"{SITE}/dir", size=10), why="is not a file")


def test_modes_are_sanitized(layer: Path) -> None:
    unpack(layer,
           rec(b"f", f"{SITE}/suid", mode=0o4755, data=b"x"),
           rec(b"f", f"{SITE}/sgid", mode=0o2750, data=b"x"),
           rec(b"f", f"{SITE}/private", mode=0o600, data=b"x"),
           rec(b"d", f"{SITE}/sticky", mode=0o1777),
           rec(b"f", f"{SITE}/implicit/deep/file", mode=0o000, data=b"x"))
    got = tree(layer)
    assert got[f"{SITE}/suid"] == "f 755" and got[f"{SITE}/sgid"] == "f 755" and got[f"{SITE}/private"] == "f 644"
    assert got[f"{SITE}/sticky"] == "d 755" and got[f"{SITE}/implicit"] == "d 755"
    assert got[f"{SITE}/implicit/deep/file"] == "f 644"


def test_sizes_counts_and_a_cut_stream_are_bounded(layer: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(err.ResourceExhausted):
        unpack(layer, rec(b"f", f"{SITE}/big", data=b"x" * 600), rec(b"f", f"{SITE}/big2", data=b"x" * 600),
               limit=1000)
    with pytest.raises(err.ResourceExhausted):
        unpack(layer, rec(b"f", f"{SITE}/huge", size=1 << 40), limit=1000)
    with pytest.raises(_layers.StreamCut):
        unpack(layer, rec(b"f", f"{SITE}/cut", size=100, data=b""), rec(b"f", f"{SITE}/x", data=b"xx"), end=False)
    with pytest.raises(_layers.StreamCut):
        unpack(layer, rec(b"d", f"{SITE}/no-end"), end=False)
    monkeypatch.setattr(_layers, "MAX_ENTRIES", 10)
    refused(layer, *(rec(b"f", f"{SITE}/many/{i}", data=b"") for i in range(20)), why="more than 10 entries")


def test_the_digest_is_the_trees_whatever_the_order_and_covers_every_byte_mode_and_target(tmp_path: Path) -> None:
    def digest(*records: bytes) -> str:
        folder = tmp_path / f"l{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        _images.make_skeleton(folder)
        return unpack(folder, *records).digest

    a, b = rec(b"f", f"{SITE}/pkg/a.py", data=b"A"), rec(b"l", f"{SITE}/alias", "pkg")
    base = digest(rec(b"d", f"{SITE}/pkg"), a, b)
    assert digest(b, a) == base  # order, and an implicit folder, change nothing
    assert digest(rec(b"f", f"{SITE}/pkg/a.py", data=b"B"), b) != base
    assert digest(rec(b"f", f"{SITE}/pkg/a.py", mode=0o755, data=b"A"), b) != base
    assert digest(a, rec(b"l", f"{SITE}/alias", "pkg/a.py")) != base
    assert digest(rec(b"f", f"{SITE}/pkg/a.py\n", data=b"A"), b) != base


def test_packages_are_read_without_following_links(layer: Path) -> None:
    unpack(layer,
           rec(b"f", f"{SITE}/good-1.0.dist-info/METADATA", data=b"Metadata-Version: 2.1\nName: Good_Pkg\nVersion: 1.0\n"),
           rec(b"l", f"{SITE}/linked-1.0.dist-info", "good-1.0.dist-info"),
           rec(b"d", f"{SITE}/other-2.0.dist-info"),
           rec(b"l", f"{SITE}/other-2.0.dist-info/METADATA", "../good-1.0.dist-info/METADATA"),
           rec(b"f", f"{SITE}/old.egg-info", data=b"Name: old\nVersion: 0.1\n\nName: ignored\n"))
    assert _images.installed(layer) == ["good-pkg==1.0", "old==0.1"]


def test_a_layer_whose_own_folders_are_links_is_refused_and_nothing_is_made_through_it(tmp_path: Path) -> None:
    """A layer an old (unchecked) build made: lib/pythonX.Y a link out. Its skeleton is not remade."""
    victim = tmp_path / "victim"
    victim.mkdir()
    old = tmp_path / "old-layer"
    (old / "lib").mkdir(parents=True)
    (old / "bin").mkdir()
    (old / "lib" / PY).symlink_to(victim)
    with pytest.raises(_layers.LayerRefused):
        _images.make_skeleton(old)
    assert os.listdir(victim) == []


def test_a_store_drops_such_a_layer_when_it_starts(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    store = _images.ImageStore(tmp_path / "images", layer_root=tmp_path / "layers")
    store.prepare()
    digest = "ab" * 32
    bad = store.layer(digest)
    (bad / "lib").mkdir(parents=True)
    (bad / "lib" / PY).symlink_to(victim)
    (store.manifests / f"{digest}.json").write_text(_images.ImageInfo(digest, "3", []).to_json())
    with store.locked():
        store.bind("old-build", digest)
    assert store.resolve("old-build").digest == digest
    store.prepare()
    assert os.listdir(victim) == [] and not bad.exists()
    with pytest.raises(err.NotFound):
        store.resolve("old-build")
    assert store.resolve("").names == ["default"]
