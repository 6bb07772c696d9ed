"""Morph's ``image_id`` as a worldrt image: the one place the compatible API knows about images.

Today worldrt has one image, its default one (the sandbox's Python and shell), which Morph's
``morphvm-minimal`` names; it starts with ``StartRequest.image`` left empty. Every other id listed here
is passed through to ``StartRequest.image``. When the host serves image RPCs (List/Inspect), ``listed``
is where they plug in: the rest of the API only calls ``listed`` and ``start_image``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from worldrt.errors import NotFound

DEFAULT_IMAGE_ID = "morphvm-minimal"
_STARTED = int(time.time())


@dataclass(frozen=True)
class Image:
    id: str
    name: str
    description: str
    disk_size: int  # bytes
    created: int
    # What StartRequest.image carries for it ("" is the provider's default image).
    worldrt_image: str

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "object": "image", "name": self.name, "description": self.description,
                "disk_size": self.disk_size, "created": self.created}


class Images:
    def listed(self) -> list[Image]:
        """Every image an ``image_id`` may name."""
        return [Image(DEFAULT_IMAGE_ID, DEFAULT_IMAGE_ID,
                      "worldrt's default image: the sandbox's Python 3 (standard library) and POSIX shell, "
                      "no network", 256 * 1024 * 1024, _STARTED, "")]

    def get(self, image_id: str) -> Image:
        for image in self.listed():
            if image.id == image_id:
                return image
        known = ", ".join(i.id for i in self.listed())
        raise NotFound(f"Image {image_id} not found (images here: {known})")

    def start_image(self, image_id: str) -> str:
        """``StartRequest.image`` for ``image_id``; NotFound when no image has that id."""
        return self.get(image_id).worldrt_image
