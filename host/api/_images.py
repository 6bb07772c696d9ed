"""Morph's ``image_id`` as a worldrt image: the one place the compatible API knows about images.

Morph's images are worldrt's images of the morph provider (``worldrt image build``), listed by the host's
ListImages. An image is named by its first name, else its digest; Morph's ``morphvm-minimal`` names
worldrt's ``default`` image (the standard library and numpy).
"""

from __future__ import annotations

from dataclasses import dataclass

from worldrt.errors import NotFound
from worldrt.host import HostAPI
from worldrt.v1 import host_pb, pb

DEFAULT_IMAGE_ID = "morphvm-minimal"
_WORLDRT_DEFAULT = "default"
_PROVIDER = "morph"


@dataclass(frozen=True)
class Image:
    id: str
    name: str
    description: str
    disk_size: int  # bytes
    created: int
    # What StartRequest.image carries for it.
    worldrt_image: str

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "object": "image", "name": self.name, "description": self.description,
                "disk_size": self.disk_size, "created": self.created}


def _as_morph(image: pb.Image) -> Image:
    name = image.names[0] if image.names else image.digest
    packages = ", ".join(image.packages) or "no packages"
    if name == _WORLDRT_DEFAULT:
        return Image(DEFAULT_IMAGE_ID, DEFAULT_IMAGE_ID,
                     f"worldrt's default image: Python {image.python} ({packages}) and a POSIX shell, no network",
                     image.size_bytes, image.created_at.seconds, image.digest)
    return Image(name, name, f"worldrt image {image.digest[:19]}: Python {image.python} ({packages})",
                 image.size_bytes, image.created_at.seconds, image.digest)


class Images:
    def __init__(self, host: HostAPI) -> None:
        self.host = host

    def listed(self) -> list[Image]:
        """Every image an ``image_id`` may name, the default one first."""
        images = [_as_morph(i) for i in self.host.list_images(host_pb.HostImageRequest(provider=_PROVIDER)).images]
        return sorted(images, key=lambda i: i.id != DEFAULT_IMAGE_ID)

    def get(self, image_id: str) -> Image:
        images = self.listed()
        for image in images:
            if image_id in (image.id, image.worldrt_image):
                return image
        known = ", ".join(i.id for i in images)
        raise NotFound(f"Image {image_id} not found (images here: {known}; build one with `worldrt image build`)")

    def start_image(self, image_id: str) -> str:
        """``StartRequest.image`` for ``image_id``; NotFound when no image has that id."""
        return self.get(image_id).worldrt_image
