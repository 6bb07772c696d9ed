"""Compatible HTTP APIs: a vendor's own SDK runs unchanged against worldrt. ``morph`` serves Morph Cloud's
REST API (as the morphcloud SDK speaks it) through the host, so every call goes over the API's generator
link to a provider and is recorded in the registry.

Every API here is served the same way, and any later one gets it by default: ``serve_guarded`` serves its
ASGI app with uvicorn (a header deadline, a connection cap) and always behind ``Guard`` (the key checked on
the headers before a body is read, bodies capped, requests in flight bounded), under ``HttpLimits``; its
calls that wait on the host go through ``Admission``; ``start_guarded`` runs the same server as a task of a
running loop (the Modal API's blob listener); the CLI's ``api serve`` flags for the bounds are
shared (``host/cli/_apis.py``)."""

from worldrt.host.api._admission import Admission, Busy, Saturated
from worldrt.host.api._app import create_app
from worldrt.host.api._guard import Guard, bearer
from worldrt.host.api._images import DEFAULT_IMAGE_ID, Image, Images
from worldrt.host.api._limits import DEFAULT_MAX_BODY_BYTES, HttpLimits
from worldrt.host.api._morph import SOURCE, MorphApi
from worldrt.host.api._serve import DEFAULT_LISTEN, parse_listen, serve_morph_api
from worldrt.host.api._server import GuardedListener, loopback_listen, serve_guarded, start_guarded

__all__ = ["MorphApi", "create_app", "serve_morph_api", "parse_listen", "DEFAULT_LISTEN", "SOURCE",
           "Images", "Image", "DEFAULT_IMAGE_ID", "HttpLimits", "DEFAULT_MAX_BODY_BYTES", "Guard", "bearer",
           "Admission", "Busy", "Saturated", "serve_guarded", "start_guarded", "GuardedListener",
           "loopback_listen"]
