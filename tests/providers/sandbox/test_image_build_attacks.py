"""Image builds as an attacker makes them, against a real morph daemon (root, as in CI) and packages
served from an index on loopback (tests/support/hostile_builds.py; ``--index-url`` on 127.0.0.1, so the
builds work whether the build sandbox shares the host's network or reaches the index through a proxy).

Issue 18 #1: a package's build shapes the layer (a chain of 240-character folders and links, lib/pythonX.Y
made a link out, links out, a fifo, a hard link to /etc/passwd, a folder swapped for a link while the
packer walks): nothing is written outside the layer store, the build fails with FAILED_PRECONDITION and
a sentence naming the entry, nothing of it stays, and the daemon serves on. A layer of odd but safe
content builds, with its modes sanitized and its inner links kept.

Issue 18 #5: two builds of the same ``name==version`` from two indexes are two images (the digest covers
the content), and a name belongs to whoever built it: another owner's build neither replaces nor removes
it, with or without ``replace``.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support import run, status_of
from tests.support.hostile_builds import PackageIndex, sdist, written_under
from worldrt.providers.sandbox import LAYER_ROOT
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

pytestmark = pytest.mark.daemons
HOSTILE = ("chain", "swap", "links-out", "special")
MALLORY = (("x-worldrt-owner", "mallory"),)


@pytest.fixture(scope="module")
def victims() -> Iterator[dict[str, Path]]:
    """A folder of the host per hostile package, where its build tries to write (under /tmp, which the
    build sandbox has too, so pip can install through the same links)."""
    made = {shape: Path(tempfile.mkdtemp(prefix=f"worldrt-victim-{shape}-", dir="/tmp")) for shape in HOSTILE}
    yield made
    for folder in made.values():
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, victims: dict[str, Path]) -> Iterator[PackageIndex]:
    with PackageIndex(tmp_path_factory.mktemp("index")) as served:
        for shape in (*HOSTILE, "safe"):
            served.add(f"rt-{shape}", "1.0", sdist(f"rt-{shape}", "1.0", shape, victim=str(victims.get(shape, ""))))
        yield served


@pytest.fixture(scope="module")
def evil_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PackageIndex]:
    """Another index serving rtdemo==1.0 with other code: an attacker's."""
    with PackageIndex(tmp_path_factory.mktemp("evil-index")) as served:
        served.add("rtdemo", "1.0", sdist("rtdemo", "1.0", source="WHO = 'evil'\n"))
        yield served


@pytest.fixture(scope="module")
def good_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PackageIndex]:
    with PackageIndex(tmp_path_factory.mktemp("good-index")) as served:
        served.add("rtdemo", "1.0", sdist("rtdemo", "1.0", source="WHO = 'good'\n"))
        yield served


def _build(stub: Any, metadata: tuple[tuple[str, str], ...] = (), **fields: Any) -> pb.Image:
    events = list(stub.BuildImage(pb.BuildImageRequest(**fields), metadata=metadata, timeout=300))
    return events[-1].image


def _staging_left(morph: ProviderDaemon) -> list[str]:
    token = (morph.state_dir / "images" / "layers-token").read_text().strip()
    return [p.name for p in (LAYER_ROOT / token / "staging").iterdir()]


def _layer(morph: ProviderDaemon, digest: str) -> Path:
    token = (morph.state_dir / "images" / "layers-token").read_text().strip()
    return LAYER_ROOT / token / digest


def _serves(stub: Any, image: str = "") -> str:
    """The daemon still does real work: an instance of ``image`` runs Python."""
    iid = stub.Start(pb.StartRequest(image=image)).instance_id
    try:
        return run(stub, iid, "import sys; sys.version_info[0]").value_json
    finally:
        stub.Stop(pb.InstanceRef(instance_id=iid))


# issue 18 #1 --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", HOSTILE)
def test_a_hostile_layer_writes_nothing_outside_the_store_and_the_daemon_serves_on(
        shape: str, stub: Any, morph: ProviderDaemon, index: PackageIndex, victims: dict[str, Path]) -> None:
    before = sorted(i.digest for i in stub.ListImages(pb.ListImagesRequest()).images)
    try:
        built: Any = _build(stub, name=f"hostile-{shape}", pip=[f"rt-{shape}==1.0"], index_url=index.url)
    except grpc.RpcError as exc:
        built = exc
    assert written_under(victims[shape]) == [], f"the build of rt-{shape} wrote outside the layer store"
    assert isinstance(built, grpc.RpcError), f"the build of rt-{shape} made an image: {built}"
    assert built.code() == grpc.StatusCode.FAILED_PRECONDITION, built.details()
    assert "does not take" in built.details() and "lib/" in built.details(), built.details()
    assert _staging_left(morph) == []
    assert sorted(i.digest for i in stub.ListImages(pb.ListImagesRequest()).images) == before
    assert status_of(lambda: stub.InspectImage(pb.ImageRef(image=f"hostile-{shape}"))) == grpc.StatusCode.NOT_FOUND
    assert _serves(stub) == "3"


def test_a_layer_of_odd_but_safe_content_builds_with_its_modes_sanitized(stub: Any, morph: ProviderDaemon,
                                                                         index: PackageIndex) -> None:
    image = _build(stub, name="odd-but-safe", pip=["rt-safe==1.0"], index_url=index.url)
    assert "rt-safe==1.0" in image.packages and image.index_url == index.url and len(image.layer_digest) == 64
    seen = json.loads(_run_in(stub, "odd-but-safe", """
import json, os, sys
site = f"/opt/python-env/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"
import rt_safe
json.dumps([os.readlink(site + "/alias"), oct(os.stat(site + "/tool").st_mode & 0o7777),
            oct(os.stat(site + "/sticky").st_mode & 0o7777), os.listdir(site + "/sticky"), rt_safe.WHO,
            os.path.lexists(site + "/unreadable")])
"""))
    assert seen == ["rt_safe", "0o755", "0o755", ["line\nbreak.txt"], "rt-safe", False]
    layer = _layer(morph, image.digest)
    for folder, dirs, names in os.walk(layer):
        for name in dirs + names:
            st = os.lstat(os.path.join(folder, name))
            assert not st.st_mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX), os.path.join(folder, name)
            assert stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)
    stub.DeleteImage(pb.ImageRef(image="odd-but-safe"))


def _run_in(stub: Any, image: str, code: str) -> str:
    iid = stub.Start(pb.StartRequest(image=image)).instance_id
    try:
        result = run(stub, iid, code)
        assert not result.error, result.error
        return str(json.loads(result.value_json))
    finally:
        stub.Stop(pb.InstanceRef(instance_id=iid))


# issue 18 #5 --------------------------------------------------------------------------------------------
def test_the_same_name_and_version_from_another_index_is_another_image(stub: Any, good_index: PackageIndex,
                                                                       evil_index: PackageIndex) -> None:
    """The attacker builds first, from its own index; the victim's later build from the real one must not
    get the attacker's layer (the old digest covered ``rtdemo==1.0`` only)."""
    evil = _build(stub, MALLORY, name="evil-demo", pip=["rtdemo==1.0"], index_url=evil_index.url)
    good = _build(stub, name="demo", pip=["rtdemo==1.0"], index_url=good_index.url)
    assert evil.packages == good.packages == ["rtdemo==1.0"]
    assert good.digest != evil.digest and not good.cached
    assert _run_in(stub, "demo", "import rtdemo; rtdemo.WHO") == "good"
    shown = stub.InspectImage(pb.ImageRef(image="demo"))
    assert shown.index_url == good_index.url and dict(shown.owners) == {"demo": "operator"}
    assert stub.InspectImage(pb.ImageRef(image="evil-demo")).index_url == evil_index.url


def test_a_name_belongs_to_whoever_built_it(stub: Any, good_index: PackageIndex, evil_index: PackageIndex) -> None:
    victim = _build(stub, name="victim-demo", pip=["rtdemo==1.0"], index_url=good_index.url)
    for replace in (False, True):
        with pytest.raises(grpc.RpcError) as info:
            _build(stub, MALLORY, name="victim-demo", pip=["rtdemo==1.0"], index_url=evil_index.url,
                   **({"replace": True} if replace else {}))
        assert info.value.code() == (grpc.StatusCode.PERMISSION_DENIED if replace else grpc.StatusCode.ALREADY_EXISTS)
        assert "victim-demo" in info.value.details() and "operator" in info.value.details()
    assert status_of(lambda: stub.DeleteImage(pb.ImageRef(image="victim-demo"), metadata=MALLORY)) == \
        grpc.StatusCode.PERMISSION_DENIED
    assert status_of(lambda: stub.DeleteImage(pb.ImageRef(image=victim.digest), metadata=MALLORY)) == \
        grpc.StatusCode.PERMISSION_DENIED
    after = stub.InspectImage(pb.ImageRef(image="victim-demo"))
    assert after.digest == victim.digest and after.index_url == good_index.url
    assert _run_in(stub, "victim-demo", "import rtdemo; rtdemo.WHO") == "good"
    # the same request from another owner is not served from the first one's cache, but the same content
    # is the same image: both names on one layer, each its own owner's
    again = _build(stub, MALLORY, name="mallory-demo", pip=["rtdemo==1.0"], index_url=good_index.url)
    assert not again.cached and again.digest == victim.digest
    owners = dict(stub.InspectImage(pb.ImageRef(image=victim.digest)).owners)
    assert owners["victim-demo"] == "operator" and owners["mallory-demo"] == "mallory"
    # its owner replaces it explicitly; a build of the same request under the same name is a no-op
    assert _build(stub, name="victim-demo", pip=["rtdemo==1.0"], index_url=good_index.url).cached
    moved = _build(stub, name="victim-demo", pip=["rtdemo==1.0"], index_url=evil_index.url, replace=True)
    assert moved.digest != victim.digest and stub.InspectImage(pb.ImageRef(image="victim-demo")).digest == moved.digest
    assert status_of(lambda: _build(stub, name="default", pip=["rtdemo==1.0"], index_url=good_index.url)) == \
        grpc.StatusCode.PERMISSION_DENIED
