"""Compatible HTTP APIs: a vendor's own SDK runs unchanged against worldrt. ``morph`` serves Morph Cloud's
REST API (as the morphcloud SDK speaks it) through the host, so every call goes over the API's generator
link to a provider and is recorded in the registry."""

from worldrt.host.api._app import create_app
from worldrt.host.api._images import DEFAULT_IMAGE_ID, Image, Images
from worldrt.host.api._morph import SOURCE, MorphApi
from worldrt.host.api._serve import DEFAULT_LISTEN, parse_listen, serve_morph_api

__all__ = ["MorphApi", "create_app", "serve_morph_api", "parse_listen", "DEFAULT_LISTEN", "SOURCE",
           "Images", "Image", "DEFAULT_IMAGE_ID"]
