"""Issue 18, findings #1 and #5, as an attacker makes them: packages on an index served on loopback whose
build (pip runs it in the build sandbox) shapes the image the daemon takes in, and two indexes serving the
same ``name==version`` with different code.

    .venv/bin/python bench/attacks_r18_images.py        # one row per attack

``run_attacks(attack, tmp)`` starts a real morph daemon (root, as in CI) and the indexes under ``tmp``,
and a victim folder per hostile package under /tmp (a folder of the host the build aims at; the build
sandbox has a /tmp of its own too). Every attack counts the files written outside the layer store (in
the victim folder) and checks that the daemon still runs Python afterwards. It runs against the old code
too: a request field the old proto lacks (``replace``) is left out, an answer field it lacks reads empty.
Needs tests/support/hostile_builds.py beside it (copy both into an old checkout).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.hostile_builds import PackageIndex, sdist, written_under
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

Outcome = tuple[bool, str]
Attack = Callable[[str, str, str, Callable[[], Outcome]], None]
BUILD_S = 300.0
MALLORY = (("x-worldrt-owner", "mallory"),)
HOSTILE = {
    "chain": "a package's build makes lib/pythonX.Y a link through 16 levels of 240-character folders and links "
             "one level deeper each, read lexically inside the layer, resolved by the kernel to a host folder",
    "swap": "CVE-2025-4517: the same chain with a last link past PATH_MAX, and renameat2 exchanges timed by inotify "
            "while the packer walks, so the stream sends a link out and then a file through it",
    "links-out": "a package's build leaves links to /etc, ../../../../../../../../../../../../etc and /etc/passwd",
    "special": "a package's build leaves a fifo, and tries a hard link to /etc/passwd",
}
SAFE = "nothing written outside the layer store; the build refused with a clear status or its image holds only " \
       "safe content; the daemon runs Python afterwards"


def _build(stub: Any, metadata: tuple[tuple[str, str], ...] = (), **fields: Any) -> pb.Image:
    replace = fields.pop("replace", False)
    try:
        request = pb.BuildImageRequest(**fields, **({"replace": True} if replace else {}))
    except ValueError:  # an old proto without BuildImageRequest.replace
        request = pb.BuildImageRequest(**fields)
    events = list(stub.BuildImage(request, metadata=metadata, timeout=BUILD_S))
    return events[-1].image


def _python_runs(stub: Any, image: str = "") -> str:
    try:
        iid = stub.Start(pb.StartRequest(image=image), timeout=60).instance_id
    except grpc.RpcError as exc:
        return f"Start failed: {exc.code().name} {exc.details()}"
    try:
        result = stub.Execute(pb.ExecuteRequest(instance_id=iid, code="import sys; sys.version_info[0]"), timeout=60)
        return "" if result.value_json == "3" else f"Execute gave {result.value_json!r} {result.error!r}"
    except grpc.RpcError as exc:
        return f"Execute failed: {exc.code().name} {exc.details()}"
    finally:
        try:
            stub.Stop(pb.InstanceRef(instance_id=iid), timeout=60)
        except grpc.RpcError:
            pass


def _hostile(stub: Any, index: PackageIndex, shape: str, victim: Path) -> Outcome:
    try:
        image = _build(stub, name=f"r18-hostile-{shape}", pip=[f"rt-{shape}==1.0"], index_url=index.url)
        result = f"built {image.digest[:12]} ({', '.join(image.packages)})"
    except grpc.RpcError as exc:
        result = f"{exc.code().name}: {(exc.details() or '')[:160]}"
    outside = written_under(victim)
    serving = _python_runs(stub)
    blocked = not outside and not serving
    said = f"{len(outside)} written outside ({', '.join(outside)[:80]})" if outside else "0 written outside"
    return blocked, f"{result}; {said}; " + ("the daemon serves on" if not serving else f"daemon: {serving}")


def _who(stub: Any, image: str) -> str:
    try:
        iid = stub.Start(pb.StartRequest(image=image), timeout=60).instance_id
    except grpc.RpcError as exc:
        return f"({exc.code().name})"
    try:
        return stub.Execute(pb.ExecuteRequest(instance_id=iid, code="import rtdemo; rtdemo.WHO"),
                            timeout=60).value_json.strip('"')
    finally:
        stub.Stop(pb.InstanceRef(instance_id=iid), timeout=60)


def _poison(stub: Any, good: PackageIndex, evil: PackageIndex) -> Outcome:
    """The attacker builds rtdemo==1.0 from its own index first; the victim then builds it from the real one."""
    evil_image = _build(stub, MALLORY, name="r18-evil-demo", pip=["rtdemo==1.0"], index_url=evil.url)
    image = _build(stub, name="r18-demo", pip=["rtdemo==1.0"], index_url=good.url)
    who = _who(stub, "r18-demo")
    same = image.digest == evil_image.digest
    return who == "good" and not same, (f"victim's digest {'==' if same else '!='} attacker's "
                                        f"({image.digest[:12]}); the victim's instance runs rtdemo from {who!r}")


def _takeover(stub: Any, good: PackageIndex, evil: PackageIndex) -> Outcome:
    """The attacker builds the victim's image name from its own index (asking to replace it where it can)."""
    victim = _build(stub, name="r18-victim", pip=["rtdemo==1.0"], index_url=good.url)
    answers = []
    for replace in (False, True):
        try:
            _build(stub, MALLORY, name="r18-victim", pip=["rtdemo==1.0"], index_url=evil.url, replace=replace)
            answers.append("OK")
        except grpc.RpcError as exc:
            answers.append(exc.code().name)
    try:
        stub.DeleteImage(pb.ImageRef(image="r18-victim"), metadata=MALLORY, timeout=60)
        answers.append("delete OK")
    except grpc.RpcError as exc:
        answers.append(f"delete {exc.code().name}")
    try:
        now = stub.InspectImage(pb.ImageRef(image="r18-victim"), timeout=60).digest
    except grpc.RpcError as exc:
        now = f"({exc.code().name})"
    who = _who(stub, "r18-victim")
    kept = now == victim.digest and who == "good"
    return kept, f"attacker's build, with replace, delete: {', '.join(answers)}; the name runs rtdemo from {who!r}"


def run_attacks(attack: Attack, tmp: Path) -> None:
    with ExitStack() as stack:
        victims = {shape: Path(tempfile.mkdtemp(prefix=f"worldrt-r18-victim-{shape}-", dir="/tmp")) for shape in HOSTILE}
        for folder in victims.values():
            stack.callback(shutil.rmtree, folder, True)
        index = stack.enter_context(PackageIndex(tmp / "r18-images-index"))
        for shape, folder in victims.items():
            index.add(f"rt-{shape}", "1.0", sdist(f"rt-{shape}", "1.0", shape, victim=str(folder)))
        good = stack.enter_context(PackageIndex(tmp / "r18-images-good"))
        good.add("rtdemo", "1.0", sdist("rtdemo", "1.0", source="WHO = 'good'\n"))
        evil = stack.enter_context(PackageIndex(tmp / "r18-images-evil"))
        evil.add("rtdemo", "1.0", sdist("rtdemo", "1.0", source="WHO = 'evil'\n"))
        daemon = stack.enter_context(ProviderDaemon("morph", state_dir=tmp / "r18-images-morph",
                                                    options={"pool_size": "1"}))
        stub = daemon.stub
        for shape, description in HOSTILE.items():
            attack("r18-1", description, SAFE,
                   lambda shape=shape: _hostile(stub, index, shape, victims[shape]))  # type: ignore[misc]
        attack("r18-5", "an attacker builds rtdemo==1.0 from its own index, then the victim from the real one",
               "two images (the digest covers the content); the victim's instance runs the real rtdemo",
               lambda: _poison(stub, good, evil))
        attack("r18-5", "another owner builds the victim's image name from its own index (then with replace), "
                        "then deletes it",
               "ALREADY_EXISTS, PERMISSION_DENIED, PERMISSION_DENIED; the name still runs the victim's image",
               lambda: _takeover(stub, good, evil))


if __name__ == "__main__":
    rows: list[tuple[str, str, bool, str]] = []

    def attack(finding: str, description: str, expected: str, fn: Callable[[], Outcome]) -> None:
        try:
            blocked, observed = fn()
        except Exception as exc:  # noqa: BLE001 - a row, not a crash
            blocked, observed = False, f"the attack itself failed: {exc!r}"[:300]
        rows.append((finding, description, blocked, observed))
        print(f"{finding:7} {'blocked' if blocked else 'NOT BLOCKED':12} {description[:90]}\n        -> {observed}",
              flush=True)

    with tempfile.TemporaryDirectory(prefix="worldrt-r18-images-") as folder:
        run_attacks(attack, Path(folder))
    print(f"{sum(r[2] for r in rows)}/{len(rows)} blocked")
