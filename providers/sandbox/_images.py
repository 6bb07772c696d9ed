"""Images: the read-only layer a sandbox's Python runs from, addressed by the digest of its spec.

A layer is a folder shaped like a venv (``pyvenv.cfg``, ``bin/python*`` naming the daemon's base
interpreter, ``lib/pythonX.Y/site-packages``, and optional ``files/``). A sandbox sees it read-only at
``/opt/python-env`` and nothing else of the daemon's environment: the base install's own site-packages
are hidden. The digest covers what the layer holds: the Python version, the package set resolved when
it was built (``name==version``, sorted) and the optional files' hashes. Building the same request
again (same Python, requirements, index and files) reuses the layer it made.

The default image holds the standard library and numpy, linked from the daemon's own environment (no
network). The store is a folder shared by the daemons of one state folder (morph and modal): every
write is a new file or folder renamed into place, so daemons that make the same layer at once agree.

The layers themselves live apart from the state folder, under ``LAYER_ROOT/TOKEN`` (TOKEN is random and
recorded in the store): a sandbox's /proc/self/mountinfo shows where its layer is bound from, and that
path must say nothing of the daemon's state. A store's layers go when its state folder is gone: each
store sweeps the layer folders whose owner no longer names them.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from worldrt import errors as err
from worldrt.providers.sandbox import _bwrap

DEFAULT = "default"
# What the default image carries from the daemon's own environment.
DEFAULT_PACKAGES = ("numpy",)
# Where layers are kept (``$WORLDRT_LAYERS`` elsewhere); private to root, bound read-only into sandboxes.
LAYER_ROOT = Path(os.environ.get("WORLDRT_LAYERS", "/var/lib/worldrt/layers"))
# A layer folder younger than this is never swept (its store may be writing its token right now).
SWEEP_AFTER_S = 600.0
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_DIGEST = re.compile(r"^(sha256:)?[0-9a-f]{12,64}$")


def python_version() -> str:
    return platform.python_version()


def site_dir(layer: Path) -> Path:
    return layer / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def base_executable() -> str:
    """The real interpreter binary a layer's ``bin/python`` names (the base of a venv, not its link)."""
    return _bwrap.base_interpreter()


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise err.InvalidArgument(f"image name {name!r} must be 1-63 of a-z, 0-9, '.', '_' or '-', "
                                  f"starting with a letter or digit")
    return name


def digest_of(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class ImageInfo:
    """One layer's manifest, as the store keeps it beside the layer."""

    digest: str
    python: str
    packages: list[str]
    requested: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    size_bytes: int = 0
    created_at: float = field(default_factory=time.time)
    source: str = "pypi"
    build_s: float = 0.0
    names: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if k != "names"}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ImageInfo:
        data = json.loads(text)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data and k != "names"})


def spec_of(python: str, packages: Iterable[str], files: dict[str, str]) -> dict[str, Any]:
    """What a layer's digest covers."""
    return {"python": python, "packages": sorted(packages), "files": dict(sorted(files.items()))}


def installed(site: Path) -> list[str]:
    """``name==version`` of every distribution in a site-packages folder (read from its own metadata)."""
    pins = set()
    for dist in metadata.distributions(path=[str(site)]):
        name = dist.metadata["Name"]
        if name:
            pins.add(f"{re.sub(r'[-_.]+', '-', name).lower()}=={dist.version}")
    return sorted(pins)


def tree_size(root: Path) -> int:
    """Bytes of the regular files under ``root`` (a folder no sandbox can change any more)."""
    total = 0
    for folder, _dirs, names in os.walk(root):
        for name in names:
            st = os.lstat(os.path.join(folder, name))
            total += st.st_size if not os.path.islink(os.path.join(folder, name)) else 0
    return total


def make_skeleton(layer: Path) -> None:
    """The venv shape of a layer: its interpreter links and ``pyvenv.cfg`` (written by the daemon)."""
    exe = base_executable()
    (layer / "bin").mkdir(parents=True, exist_ok=True)
    site_dir(layer).mkdir(parents=True, exist_ok=True)
    major, minor = sys.version_info.major, sys.version_info.minor
    for name in ("python", "python3", f"python{major}.{minor}"):
        link = layer / "bin" / name
        if link.is_symlink() and os.readlink(link) != exe:
            link.unlink()  # made by a daemon that ran another interpreter of this version
        if not link.is_symlink():
            link.symlink_to(exe)
    (layer / "pyvenv.cfg").write_text(f"home = {os.path.dirname(exe)}\ninclude-system-site-packages = false\n"
                                      f"version = {python_version()}\n")


def open_up(root: Path) -> None:
    """Folders 0755 and files readable by all: sandboxes run as uids of their own."""
    for folder, dirs, names in os.walk(root):
        os.chmod(folder, 0o755)
        for name in names:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                mode = os.lstat(path).st_mode & 0o777
                os.chmod(path, (mode | 0o444) & ~0o022)
        del dirs[:0]


def _link_or_copy(source: str, target: str) -> None:
    """Files of the daemon's own environment: a hard link when others may read them, else a copy."""
    st = os.lstat(source)
    if st.st_mode & 0o004:
        try:
            os.link(source, target)
            return
        except OSError:
            pass
    shutil.copy2(source, target)


class ImageStore:
    """Layers, manifests, names and the request keys of past builds, in one folder."""

    def __init__(self, root: Path, layer_root: Path | None = None) -> None:
        self.root = root.resolve()
        self.layer_root = layer_root or LAYER_ROOT
        self.manifests = self.root / "manifests"
        self.names = self.root / "names"
        self.specs = self.root / "specs"
        # Set by prepare(): this store's folder under the layer root, and its staging folder.
        self.layers = self.layer_root / "unprepared"
        self.staging = self.layers / "staging"

    @classmethod
    def beside(cls, state_dir: Path) -> ImageStore:
        """The store shared by the daemons whose state folders are siblings of ``state_dir`` (the daemons
        of one ``--state-dir``: morph's and modal's images are the same)."""
        return cls(state_dir.resolve().parent / "images")

    def prepare(self) -> None:
        for folder in (self.manifests, self.names, self.specs):
            folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        self.layer_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        token = self._token()
        self.layers = self.layer_root / token
        self.staging = self.layers / "staging"
        self.staging.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.layers, 0o755)
        self._sweep()
        for manifest in self.manifests.glob("*.json"):
            if self.layer(manifest.stem).is_dir():
                make_skeleton(self.layer(manifest.stem))  # the interpreter links name this daemon's
        self.ensure_default()

    def _token(self) -> str:
        """This store's folder under the layer root: made once, by whichever daemon of it comes first."""
        path = self.root / "layers-token"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            pass
        token = secrets.token_hex(12)
        folder = self.layer_root / token
        folder.mkdir(mode=0o755)
        (folder / "owner").write_text(str(self.root))
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            shutil.rmtree(folder, ignore_errors=True)
            return path.read_text().strip()
        with os.fdopen(fd, "w") as f:
            f.write(token)
        return token

    def _sweep(self) -> None:
        """Remove the layer folders of stores that are gone (their state folder was deleted)."""
        now = time.time()
        for folder in self.layer_root.iterdir():
            try:
                if now - folder.stat().st_ctime < SWEEP_AFTER_S:
                    continue
                owner = Path((folder / "owner").read_text().strip())
                named = (owner / "layers-token").read_text().strip() if owner.is_dir() else ""
            except FileNotFoundError:
                named = ""
            except OSError:
                continue
            if named != folder.name:
                shutil.rmtree(folder, ignore_errors=True)

    # reading --------------------------------------------------------------------------------------
    def layer(self, digest: str) -> Path:
        return self.layers / digest

    def manifest(self, digest: str) -> ImageInfo | None:
        try:
            info = ImageInfo.from_json((self.manifests / f"{digest}.json").read_text())
        except (OSError, ValueError, TypeError):
            return None
        if not self.layer(digest).is_dir():
            return None
        info.names = self.names_of(digest)
        return info

    def names_of(self, digest: str) -> list[str]:
        found = []
        for path in sorted(self.names.glob("*")):
            try:
                if path.read_text().strip() == digest:
                    found.append(path.name)
            except OSError:
                continue
        return found

    def digest_named(self, name: str) -> str | None:
        try:
            return (self.names / name).read_text().strip()
        except OSError:
            return None

    def resolve(self, ref: str) -> ImageInfo:
        """The image a name, a digest (or a unique prefix of one, ``sha256:`` optional) or "" (the default)
        names; NotFound with the names there are otherwise."""
        ref = ref.strip() or DEFAULT
        digest = self.digest_named(ref) if _NAME.match(ref) else None
        if digest is None and _DIGEST.match(ref):
            bare = ref.removeprefix("sha256:")
            matches = [p.stem for p in self.manifests.glob(f"{bare}*.json")]
            if len(matches) == 1:
                digest = matches[0]
        info = self.manifest(digest) if digest else None
        if info is None:
            known = ", ".join(p.name for p in sorted(self.names.glob("*"))) or "none"
            raise err.NotFound(f"no image {ref!r} here (images: {known}); build it with worldrt image build")
        return info

    def all(self) -> list[ImageInfo]:
        found = [self.manifest(p.stem) for p in sorted(self.manifests.glob("*.json"))]
        return sorted((i for i in found if i is not None), key=lambda i: i.created_at)

    def cached(self, key: str) -> ImageInfo | None:
        try:
            digest = (self.specs / key).read_text().strip()
        except OSError:
            return None
        return self.manifest(digest)

    # writing --------------------------------------------------------------------------------------
    def new_staging(self) -> Path:
        path = self.staging / f"{secrets.token_hex(8)}"
        path.mkdir(mode=0o700)
        return path

    def _write(self, path: Path, text: str) -> None:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        tmp.write_text(text)
        os.replace(tmp, path)

    def name(self, name: str, digest: str) -> None:
        self._write(self.names / check_name(name), digest)

    def commit(self, staging: Path, info: ImageInfo, key: str = "", name: str = "") -> ImageInfo:
        """Move a finished layer into place under its digest (another daemon's identical layer wins),
        and record its manifest, its request key and its name."""
        open_up(staging)
        info.size_bytes = tree_size(staging)
        target = self.layer(info.digest)
        try:
            os.rename(staging, target)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            if not target.is_dir():
                raise
        manifest = self.manifests / f"{info.digest}.json"
        if not manifest.exists():
            self._write(manifest, info.to_json())
        if key:
            self._write(self.specs / key, info.digest)
        if name:
            self.name(name, info.digest)
        return self.manifest(info.digest) or info

    def remove(self, ref: str, in_use: Iterable[str] = ()) -> ImageInfo:
        """Drop a name (every name, given a digest), and the layer once no name is left on it; a layer that
        live members use (``in_use``) and the default image stay."""
        info = self.resolve(ref)
        by_name = bool(_NAME.match(ref)) and ref in info.names
        if ref in (DEFAULT, "") or (info.digest == self.digest_named(DEFAULT) and not by_name):
            raise err.FailedPrecondition("the default image cannot be deleted")
        left = [n for n in info.names if n != ref] if by_name else []
        if not left and info.digest in set(in_use):
            raise err.FailedPrecondition(f"image {ref!r} is used by live instances or snapshots on this daemon; "
                                         f"stop them first")
        for name in info.names:
            if name not in left:
                (self.names / name).unlink(missing_ok=True)
        if not left:
            for path in self.specs.glob("*"):
                try:
                    if path.read_text().strip() == info.digest:
                        path.unlink(missing_ok=True)
                except OSError:
                    continue
            (self.manifests / f"{info.digest}.json").unlink(missing_ok=True)
            trash = self.staging / f"gone-{info.digest}-{secrets.token_hex(4)}"
            os.rename(self.layer(info.digest), trash)
            shutil.rmtree(trash, ignore_errors=True)
        info.names = left
        return info

    # the default image ------------------------------------------------------------------------------
    def ensure_default(self) -> ImageInfo:
        """The default image: the standard library and numpy taken from this daemon's own environment."""
        picked: list[Path] = []
        pins: list[str] = []
        where = ""
        for package in DEFAULT_PACKAGES:
            try:
                dist = metadata.distribution(package)
            except metadata.PackageNotFoundError:
                continue
            site = Path(str(dist.locate_file("")))
            top = {str(f).split("/", 1)[0] for f in dist.files or () if not str(f).startswith("..")}
            picked += [site / t for t in sorted(top) if (site / t).exists() and not t.endswith(".pth")]
            pins.append(f"{re.sub(r'[-_.]+', '-', dist.metadata['Name']).lower()}=={dist.version}")
            where = str(site)
        digest = digest_of(spec_of(python_version(), pins, {}))
        if self.manifest(digest) is not None:
            if self.digest_named(DEFAULT) != digest:
                self.name(DEFAULT, digest)
            return self.resolve(DEFAULT)
        staging = self.new_staging()
        try:
            make_skeleton(staging)
            target_site = site_dir(staging)
            for path in picked:
                if path.is_dir():
                    shutil.copytree(path, target_site / path.name, symlinks=True, copy_function=_link_or_copy,
                                    ignore=shutil.ignore_patterns("tests"))
                else:
                    _link_or_copy(str(path), str(target_site / path.name))
            info = ImageInfo(digest, python_version(), sorted(pins), requested=list(DEFAULT_PACKAGES),
                             source=f"the daemon's own environment ({where or 'standard library only'})")
            return self.commit(staging, info, name=DEFAULT)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
