"""Images: the read-only layer a sandbox's Python runs from, addressed by the digest of its content.

A layer is a folder shaped like a venv (``pyvenv.cfg``, ``bin/python*`` naming the daemon's base
interpreter, ``lib/pythonX.Y/site-packages``, and optional ``files/``). A sandbox sees it read-only at
``/opt/python-env`` and nothing else of the daemon's environment: the base install's own site-packages
are hidden. A built image's digest covers what its layer holds, as the daemon wrote it (``_layers``:
every path, kind, mode, file hash and link target) with the Python version and the optional files'
hashes; two builds that say the same ``name==version`` from two indexes are two images. The default
image, made by the daemon from its own environment, is named by its package set. Building the same
request again (same Python, requirements, index, files and owner) reuses the layer it made.

Names: a name belongs to whoever first bound it (its owner, from the call's metadata: ``OPERATOR`` for
the host's own calls) and records the index it was built from. A build never moves a name to another
image unless it asks to replace it, and only the name's owner may (or remove it); ``default`` is the
daemon's own. Name changes and commits hold the store's lock (one file, flock), so morph and modal
agree.

The default image holds the standard library and numpy, linked from the daemon's own environment (no
network). The store is a folder shared by the daemons of one state folder (morph and modal): every
write is a new file or folder renamed into place, so daemons that make the same layer at once agree.

The layers themselves live apart from the state folder, under ``LAYER_ROOT/TOKEN`` (TOKEN is random and
recorded in the store): a sandbox's /proc/self/mountinfo shows where its layer is bound from, and that
path must say nothing of the daemon's state. A store's layers go when its state folder is gone: each
store sweeps the layer folders whose owner no longer names them.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from worldrt import errors as err
from worldrt.providers.sandbox import _bwrap, _layers

log = logging.getLogger("worldrt.images")

DEFAULT = "default"
# The owner of the names the host's own calls bind (no x-worldrt-owner metadata), and of ``default``.
OPERATOR = "operator"
DAEMON = "worldrt"
# What the default image carries from the daemon's own environment.
DEFAULT_PACKAGES = ("numpy",)
# Where layers are kept (``$WORLDRT_LAYERS`` elsewhere); private to root, bound read-only into sandboxes.
LAYER_ROOT = Path(os.environ.get("WORLDRT_LAYERS", "/var/lib/worldrt/layers"))
# A layer folder younger than this is never swept (its store may be writing its token right now).
SWEEP_AFTER_S = 600.0
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_DIGEST = re.compile(r"^(sha256:)?[0-9a-f]{12,64}$")
_OWNER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}$")


def python_version() -> str:
    """This interpreter's version as ``platform.python_version()`` gives it (``3.11.2``, ``3.14.0rc1``),
    without importing ``platform``."""
    return sys.version.split()[0]


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


def check_owner(owner: str) -> str:
    if not _OWNER.match(owner):
        raise err.InvalidArgument(f"image owner {owner[:40]!r} must be 1-128 of letters, digits and ._:@/+- "
                                  f"(x-worldrt-owner metadata)")
    return owner


def digest_of(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def content_digest(python: str, layer: str, files: dict[str, str]) -> str:
    """A built image's digest: its layer's tree digest (``_layers.unpack``), its Python and its files."""
    return digest_of({"python": python, "layer": layer, "files": dict(sorted(files.items()))})


@dataclass(frozen=True)
class NameRecord:
    """What a name says: the image, who may move it, and where that image was built from."""

    digest: str
    owner: str = OPERATOR
    index_url: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def parse(cls, text: str) -> NameRecord:
        text = text.strip()
        if not text.startswith("{"):
            return cls(text)  # a name bound before names had owners: the operator's
        data = json.loads(text)
        return cls(str(data["digest"]), str(data.get("owner") or OPERATOR), str(data.get("index_url") or ""))


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
    # The index the first build of this layer came from ("" for the default image).
    index_url: str = ""
    # The digest of the layer's tree as the daemon wrote it ("" for the default image and for images
    # built before digests covered content).
    layer_digest: str = ""
    names: list[str] = field(default_factory=list)
    owners: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if k not in ("names", "owners")}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ImageInfo:
        data = json.loads(text)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data and k not in ("names", "owners")})


def spec_of(python: str, packages: Iterable[str], files: dict[str, str]) -> dict[str, Any]:
    """What a layer's digest covers."""
    return {"python": python, "packages": sorted(packages), "files": dict(sorted(files.items()))}


def installed(layer: Path) -> list[str]:
    """``name==version`` of every distribution in a layer's site-packages (read without following links)."""
    return _layers.packages(layer)


def tree_size(root: Path) -> int:
    """Bytes of the regular files under ``root`` (a folder no sandbox can change any more)."""
    total = 0
    for folder, _dirs, names in os.walk(root):
        for name in names:
            st = os.lstat(os.path.join(folder, name))
            total += st.st_size if not os.path.islink(os.path.join(folder, name)) else 0
    return total


def interpreter_links() -> tuple[str, ...]:
    major, minor = sys.version_info.major, sys.version_info.minor
    return ("python", "python3", f"python{major}.{minor}")


def make_skeleton(layer: Path) -> None:
    """The venv shape of a layer: its folders, its interpreter links (naming this daemon's interpreter:
    another of this version may have made them) and ``pyvenv.cfg``, written by the daemon through
    descriptors; LayerRefused when one of its folders is a link (a layer made by an unchecked build)."""
    exe = base_executable()
    _layers.write_skeleton(layer, exe, interpreter_links(),
                           f"home = {os.path.dirname(exe)}\ninclude-system-site-packages = false\n"
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
                try:
                    make_skeleton(self.layer(manifest.stem))  # the interpreter links name this daemon's
                except _layers.LayerRefused as exc:
                    self._drop_unsafe(manifest.stem, str(exc))
        self.ensure_default()

    def _drop_unsafe(self, digest: str, why: str) -> None:
        """A layer an unchecked build made whose own folders are links: its names, manifest and folder go
        (removed without following anything in it), so no daemon writes through it again."""
        log.warning("image %s dropped: %s", digest[:12], why)
        with self.locked():
            for name, found in self._records().items():
                if found.digest == digest:
                    (self.names / name).unlink(missing_ok=True)
            (self.manifests / f"{digest}.json").unlink(missing_ok=True)
            trash = self.staging / f"unsafe-{digest}-{secrets.token_hex(4)}"
            os.rename(self.layer(digest), trash)
            shutil.rmtree(trash, ignore_errors=True)

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
        records = self._records()
        info.names = sorted(n for n, r in records.items() if r.digest == digest)
        info.owners = {n: records[n].owner for n in info.names}
        return info

    def _records(self) -> dict[str, NameRecord]:
        found = {}
        for path in sorted(self.names.glob("*")):
            if not _NAME.match(path.name):
                continue
            try:
                found[path.name] = NameRecord.parse(path.read_text())
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return found

    def record(self, name: str) -> NameRecord | None:
        try:
            return NameRecord.parse((self.names / name).read_text())
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def names_of(self, digest: str) -> list[str]:
        return sorted(n for n, r in self._records().items() if r.digest == digest)

    def digest_named(self, name: str) -> str | None:
        found = self.record(name)
        return found.digest if found else None

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
            known = ", ".join(p.name for p in sorted(self.names.glob("*")) if _NAME.match(p.name)) or "none"
            raise err.NotFound(f"no image {ref!r} here (images: {known}); build it with worldrt image build",
                               reason=err.Reason.IMAGE_NOT_FOUND)
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

    # names ----------------------------------------------------------------------------------------
    def check_bind(self, name: str, owner: str, replace: bool, digest: str | None = None) -> None:
        """Whether ``owner`` may point ``name`` at ``digest`` (None: at whatever a build will make):
        a free name, the image it names already, or a replace by its owner. Raises otherwise."""
        check_name(name)
        if name == DEFAULT:
            if owner == DAEMON:
                return
            raise err.PermissionDenied(f"image name {DEFAULT!r} is the daemon's own image: build under another name")
        current = self.record(name)
        if current is None or current.digest == digest:
            return
        if not replace:
            by = f" by {current.owner}" if current.owner else ""
            raise err.AlreadyExists(
                f"image name {name!r} names {current.digest[:12]}, built{by} from "
                f"{current.index_url or 'an earlier build'}; a build does not move a name to another image: pick "
                f"another name, or replace it as its owner (worldrt image build --replace, BuildImageRequest.replace)")
        if current.owner != owner:
            raise err.PermissionDenied(f"image name {name!r} belongs to {current.owner}, who built it; only they "
                                       f"may replace it: pick another name")

    @contextmanager
    def locked(self) -> Iterator[None]:
        """The store's lock, held across a check and the write it allows (shared with the other daemons)."""
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def bind(self, name: str, digest: str, owner: str = OPERATOR, index_url: str = "", replace: bool = False) -> None:
        """Point ``name`` at ``digest`` for ``owner``, as ``check_bind`` allows (call holding ``locked``).
        A name that names ``digest`` already keeps its owner."""
        self.check_bind(name, owner, replace, digest)
        current = self.record(name)
        if current is not None and current.digest == digest:
            return
        self._write(self.names / name, NameRecord(digest, owner, index_url).to_json())

    # writing --------------------------------------------------------------------------------------
    def new_staging(self) -> Path:
        path = self.staging / f"{secrets.token_hex(8)}"
        path.mkdir(mode=0o700)
        return path

    def _write(self, path: Path, text: str) -> None:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        tmp.write_text(text)
        os.replace(tmp, path)

    def commit(self, staging: Path, info: ImageInfo, key: str = "", name: str = "", owner: str = OPERATOR,
               replace: bool = False, checked: bool = False) -> ImageInfo:
        """Move a finished layer into place under its digest (another daemon's identical layer wins), and
        record its manifest, its request key and its name (``bind``'s rules; nothing is kept when the name
        is refused). ``checked``: the layer was made by ``_layers.unpack`` (modes set, size counted), so it
        is not walked here; else it is the daemon's own (the default image) and its modes are opened up."""
        if checked:
            os.chmod(staging, 0o755)
            files = staging / "files"
            if files.is_dir() and not files.is_symlink():
                open_up(files)
                info.size_bytes += tree_size(files)
        else:
            open_up(staging)
            info.size_bytes = tree_size(staging)
        with self.locked():
            if name:
                self.check_bind(name, owner, replace, info.digest)
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
                self.bind(name, info.digest, owner, info.index_url, replace)
        return self.manifest(info.digest) or info

    def remove(self, ref: str, in_use: Iterable[str] = (), owner: str = OPERATOR) -> ImageInfo:
        """Drop a name (``owner``'s names, given a digest), and the layer once no name is left on it; a
        layer that live members use (``in_use``) and the default image stay, and a name is removed only by
        its owner."""
        with self.locked():
            info = self.resolve(ref)
            by_name = bool(_NAME.match(ref)) and ref in info.names
            if ref in (DEFAULT, "") or (info.digest == self.digest_named(DEFAULT) and not by_name):
                raise err.FailedPrecondition("the default image cannot be deleted")
            if by_name and info.owners.get(ref, OPERATOR) != owner:
                raise err.PermissionDenied(f"image name {ref!r} belongs to {info.owners[ref]}; only they may remove it")
            dropped = [ref] if by_name else [n for n in info.names if info.owners.get(n, OPERATOR) == owner]
            if info.names and not dropped:
                raise err.PermissionDenied(f"the names of image {info.digest[:12]} ({', '.join(info.names)}) belong to "
                                           f"{', '.join(sorted(set(info.owners.values())))}; only they may remove them")
            left = [n for n in info.names if n not in dropped]
            if not left and info.digest in set(in_use):
                raise err.FailedPrecondition(f"image {ref!r} is used by live instances or snapshots on this daemon; "
                                             f"stop them first")
            for name in dropped:
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
            info.owners = {n: o for n, o in info.owners.items() if n in left}
            return info

    # the default image ------------------------------------------------------------------------------
    def ensure_default(self) -> ImageInfo:
        """The default image: the standard library and numpy taken from this daemon's own environment."""
        dists = []
        for package in DEFAULT_PACKAGES:
            try:
                dists.append(metadata.distribution(package))
            except metadata.PackageNotFoundError:
                continue
        pins = [f"{re.sub(r'[-_.]+', '-', dist.metadata['Name']).lower()}=={dist.version}" for dist in dists]
        digest = digest_of(spec_of(python_version(), pins, {}))
        if self.manifest(digest) is not None:
            if self.digest_named(DEFAULT) != digest:
                with self.locked():
                    self.bind(DEFAULT, digest, DAEMON)
            return self.resolve(DEFAULT)
        picked: list[Path] = []
        where = ""
        for dist in dists:  # the files a distribution lists are read only to build its layer
            site = Path(str(dist.locate_file("")))
            top = {str(f).split("/", 1)[0] for f in dist.files or () if not str(f).startswith("..")}
            picked += [site / t for t in sorted(top) if (site / t).exists() and not t.endswith(".pth")]
            where = str(site)
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
            return self.commit(staging, info, name=DEFAULT, owner=DAEMON)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
