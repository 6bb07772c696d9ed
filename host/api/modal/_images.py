"""Modal's image recipes as worldrt images of the modal provider.

A Modal image is a chain of layers, each a list of Dockerfile commands. Here:

- ``debian_slim()`` (its ``FROM python:…-slim-…`` line and its fixed apt/pip set-up lines) is worldrt's
  default image: the base interpreter and numpy, no build;
- ``pip_install(...)`` on top of it (``FROM base`` then ``RUN python -m pip install PKGS``, any number of
  layers) is a worldrt image build of the packages of every layer, named by their digest
  (``modal-<sha256 of the sorted requirements>``): a second run finds it built and starts at once;
- a filesystem snapshot of a sandbox is an image too (``snapshot_image``), started from its worldrt
  snapshot.

Every other step (``apt_install``, ``run_commands``, ``from_registry``, Dockerfiles, ``env``, ``workdir``,
local files, build functions, image secrets or volumes) cannot be honoured here: its image is a failed build
whose exception names the step and why, which the SDK raises as ``ImageBuildError``. Image ids are
content-addressed too (the same recipe is the same ``im-…`` id), so the SDK's cache check works.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shlex
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from modal_proto import api_pb2

from worldrt.errors import NotFound, WorldError
from worldrt.host import HostAPI
from worldrt.v1 import host_pb, pb

log = logging.getLogger("worldrt.api.modal")

PROVIDER = "modal"
SUCCESS = api_pb2.GenericResult.GENERIC_STATUS_SUCCESS
FAILURE = api_pb2.GenericResult.GENERIC_STATUS_FAILURE
# The newest image builder version of each client minor release this server has been tested with; an older
# client gets 2024.10, which every 1.x client accepts.
_BUILDER_VERSIONS = {(1, 6): "2026.10"}
_OLDEST_BUILDER = "2024.10"
_DEBIAN_SLIM_FROM = re.compile(r"^FROM python:(\d+)\.(\d+)[^\s]*-slim(-[a-z]+)?$")
_DEBIAN_SLIM_STEPS = (re.compile(r"^RUN apt-get update$"),
                      re.compile(r"^RUN apt-get install -y gcc gfortran build-essential$"),
                      re.compile(r"^RUN pip install --upgrade [\w .=<>~,-]+$"),
                      re.compile(r"^RUN echo 'debconf debconf/frontend select Noninteractive' \| debconf-set-selections$"),
                      re.compile(r"^CMD \[\"sleep\", \"\d+\"\]$"),
                      # Builder versions up to 2024.10 also copy, install and remove Modal's own requirements.
                      re.compile(r"^COPY /modal_requirements\.txt /modal_requirements\.txt$"),
                      re.compile(r"^RUN python -m pip install --no-cache-dir -r /modal_requirements\.txt$"),
                      re.compile(r"^RUN rm /modal_requirements\.txt$"))
_PIP = "RUN python -m pip install "
# Images remembered at most: past it the least recently used are forgotten (refused recipes first; never
# one still building). A forgotten image's id is NotFound; its recipe, asked again, is the same id again.
MAX_IMAGES = 1024
# Build log lines kept per image (what ImageJoinStreaming replays); past it one line says the rest was cut.
MAX_LOG_LINES = 2000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-\[\],<>=!~ ]*$")


def builder_version(client_version: str) -> str:
    """The image builder version to answer a client of ``client_version`` (``x-modal-client-version``)."""
    match = re.match(r"^(\d+)\.(\d+)", client_version or "")
    if match is None:
        return _OLDEST_BUILDER
    return _BUILDER_VERSIONS.get((int(match.group(1)), int(match.group(2))), _OLDEST_BUILDER)


class Refused(Exception):
    """A recipe step this machine cannot build: the message names it and says why."""


@dataclass
class ModalImage:
    id: str
    # "default", "pip" or "snapshot"; "refused" when its recipe cannot be built here.
    kind: str
    packages: tuple[str, ...] = ()
    snapshot_id: str = ""
    status: int = 0  # a GenericResult status; 0 while it builds
    exception: str = ""
    logs: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.time)

    @property
    def worldrt_name(self) -> str:
        if self.kind != "pip":
            return ""
        return "modal-" + hashlib.sha256("\n".join(self.packages).encode()).hexdigest()[:24]

    def log(self, line: str) -> None:
        if len(self.logs) < MAX_LOG_LINES:
            self.logs.append(line)
        elif len(self.logs) == MAX_LOG_LINES:
            self.logs.append(f"(more build output is not kept: {MAX_LOG_LINES} lines are)\n")

    def result(self) -> api_pb2.GenericResult:
        return api_pb2.GenericResult(status=self.status, exception=self.exception)  # type: ignore[arg-type]

    def start(self) -> dict[str, Any]:
        """What a StartRequest carries to start from this image."""
        if self.kind == "snapshot":
            return {"snapshot_id": self.snapshot_id}
        return {"image": self.worldrt_name}


def metadata(version: str) -> api_pb2.ImageMetadata:
    info = sys.version_info
    return api_pb2.ImageMetadata(python_version_info=f"{info.major}.{info.minor}.{info.micro}",
                                 image_builder_version=version, workdir="/workspace")


def _layer_id(*parts: str) -> str:
    return "im-" + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def _unsupported_fields(image: api_pb2.Image) -> str | None:
    checks = (
        (image.context_files or image.context_mount_id, "local files (add_local_*, COPY)",
         "worldrt images carry pip packages only; write files into the sandbox with sb.filesystem instead"),
        (image.secret_ids, "build secrets", "worldrt image builds take no secrets"),
        (image.HasField("gpu_config") and image.gpu_config.count > 0, "a GPU build", "this machine has no GPU"),
        (image.HasField("build_function"), "run_function", "worldrt builds run pip only, never your code"),
        (image.volume_mounts, "volumes", "worldrt has no Modal volumes"),
    )
    for present, what, why in checks:
        if present:
            return f"{what} cannot be built here: {why}"
    return None


def _step_refusal(command: str) -> str:
    if command.startswith(("RUN apt-get", "RUN apt ")):
        return (f"the step `{command}` (apt_install) cannot be built here: worldrt images hold pip packages "
                f"only, on the machine's own system libraries")
    if command.startswith("FROM "):
        return (f"the step `{command}` (from_registry, from_dockerfile) cannot be built here: worldrt "
                f"cannot pull container images; use modal.Image.debian_slim()")
    if command.startswith("RUN "):
        return (f"the step `{command}` (run_commands) cannot be built here: worldrt image builds run pip "
                f"only; run the command in the sandbox with sb.exec instead")
    word = command.split(" ", 1)[0]
    return f"the step `{command}` ({word.lower()}) cannot be built here: worldrt images hold pip packages only"


def _pip_packages(command: str) -> list[str]:
    try:
        words = shlex.split(command[len(_PIP):])
    except ValueError:
        raise Refused(f"the step `{command}` does not parse as a command line") from None
    for word in words:
        if word.startswith("-"):
            raise Refused(f"the step `{command}` passes pip the option {word}, which cannot be built here: worldrt "
                          f"image builds take package requirements only (from PyPI)")
        if not _NAME.match(word):
            raise Refused(f"the step `{command}` names `{word}`, which is not a package requirement")
    return words


class Images:
    """The images this server has answered for (at most ``max_images``, the least recently used forgotten
    past it), by id; builds run on threads of their own."""

    def __init__(self, host: HostAPI, *, max_images: int = MAX_IMAGES) -> None:
        self.host = host
        self.max_images = max_images
        self._lock = threading.Lock()
        self._images: OrderedDict[str, ModalImage] = OrderedDict()

    def __len__(self) -> int:
        with self._lock:
            return len(self._images)

    def get(self, image_id: str) -> ModalImage:
        with self._lock:
            image = self._images.get(image_id)
            if image is not None:
                self._images.move_to_end(image_id)
        if image is None:
            raise NotFound(f"Image {image_id} not found on this server (or forgotten: it keeps the "
                           f"{self.max_images} most recently used); define the image again")
        return image

    def _put(self, image: ModalImage) -> ModalImage:
        with self._lock:
            known = self._images.setdefault(image.id, image)
            self._images.move_to_end(image.id)
            self._forget_least_used()
            return known

    def _forget_least_used(self) -> None:
        excess = len(self._images) - self.max_images
        if excess <= 0:
            return
        # Refused recipes first (any client can make endless distinct ones), then the least recently used;
        # an image still building is kept (its build reports to it, and a join waits on it).
        order = [i for i in self._images.values() if i.kind == "refused"] + \
                [i for i in self._images.values() if i.kind != "refused"]
        for old in [i for i in order if i.status != 0][:excess]:
            del self._images[old.id]

    def get_or_create(self, request: api_pb2.ImageGetOrCreateRequest) -> ModalImage:
        """The image of one layer: known, or planned now (and its build started when it needs one)."""
        try:
            image = self._plan(request.image)
        except Refused as refused:
            digest = request.image.SerializeToString(deterministic=True).hex()
            return self._put(ModalImage(_layer_id("refused", digest), "refused", status=FAILURE,
                                        exception=str(refused)))
        known = self._put(image)
        if known is image and image.kind == "pip":
            threading.Thread(target=self._build, args=(image,), name=f"modal-image-{image.id}", daemon=True).start()
        return known

    def _plan(self, image: api_pb2.Image) -> ModalImage:
        problem = _unsupported_fields(image)
        if problem:
            raise Refused(problem)
        commands = [c.strip() for c in image.dockerfile_commands]
        if not image.base_images:
            if not commands or not _DEBIAN_SLIM_FROM.match(commands[0]):
                raise Refused(_step_refusal(commands[0]) if commands else "an image needs a FROM step")
            for command in commands[1:]:
                if not any(step.match(command) for step in _DEBIAN_SLIM_STEPS):
                    raise Refused(_step_refusal(command))
            return ModalImage(_layer_id("default"), "default", status=SUCCESS,
                              logs=["debian_slim() is worldrt's default image: the standard library and numpy\n"])
        if len(image.base_images) != 1 or commands[:1] != [f"FROM {image.base_images[0].docker_tag}"]:
            raise Refused("an image layer here builds on exactly one base image")
        base = self.get(image.base_images[0].image_id)
        if base.kind not in ("default", "pip") or base.status != SUCCESS:
            raise Refused(f"the base image {base.id} is a {base.kind} image that is not ready; worldrt adds "
                          f"packages only to debian_slim() and its pip_install layers")
        packages = set(base.packages)
        refused = [c for c in commands[1:] if not c.startswith(_PIP)]
        if refused:
            # Name the step a person wrote (apt_install's install, not the update it comes with).
            raise Refused(_step_refusal(next((c for c in refused if "apt-get install" in c), refused[0])))
        for command in commands[1:]:
            packages.update(_pip_packages(command))
        if not packages:
            return base
        ordered = tuple(sorted(packages))
        return ModalImage(_layer_id("pip", *ordered), "pip", packages=ordered)

    def _build(self, image: ModalImage) -> None:
        name = image.worldrt_name
        try:
            found = self.host.inspect_image(host_pb.HostImageRequest(provider=PROVIDER, image=name))
        except NotFound:
            found = None
        except WorldError as exc:
            log.warning("could not look up image %s: %s", name, exc.message)
            found = None
        if found is not None:
            image.log(f"worldrt image {name} ({found.digest[:19]}) is built already\n")
            image.status = SUCCESS
            return
        image.log(f"building worldrt image {name}: pip install {' '.join(image.packages)}\n")

        def progress(event: Any) -> None:
            if isinstance(event, pb.BuildImageEvent) and event.HasField("progress"):
                image.log(f"{event.progress.stage}: {event.progress.message}\n")

        try:
            built = self.host.build_image(host_pb.HostBuildImageRequest(
                provider=PROVIDER, build=pb.BuildImageRequest(name=name, pip=list(image.packages))), progress)
        except WorldError as exc:
            image.exception = f"pip install {' '.join(image.packages)} failed: {exc.message}"
            image.log(image.exception + "\n")
            image.status = FAILURE
            return
        except Exception as exc:  # a build thread reports, never dies silently
            log.exception("image build %s failed", name)
            image.exception = f"the build failed: {exc!r}"
            image.status = FAILURE
            return
        image.log(f"built worldrt image {name} ({built.digest[:19]})\n")
        image.status = SUCCESS

    def snapshot_image(self, snapshot_id: str) -> ModalImage:
        return self._put(ModalImage(_layer_id("snapshot", snapshot_id), "snapshot", snapshot_id=snapshot_id,
                                    status=SUCCESS))
