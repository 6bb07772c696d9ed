"""``worldrt api serve e2b``: E2B's API (control plane, envd and the code interpreter) on one plain
HTTP/1.1 port, so the official ``e2b`` and ``e2b-code-interpreter`` SDKs run unchanged against worldrt with
``E2B_API_URL`` and ``E2B_SANDBOX_URL`` pointing here and ``E2B_API_KEY`` the server's key.

It needs the optional extra ``world-runtime[e2b]`` (the envd server classes ship in the ``e2b`` wheel and
are used from there, never copied). Every call goes through the host with source ``e2b-api`` and is
recorded; sandboxes are morph instances, so fork and pause keep the interpreter's memory.
"""

from worldrt.host.api.e2b._app import create_app
from worldrt.host.api.e2b._paths import HOME
from worldrt.host.api.e2b._records import ENVD_VERSION
from worldrt.host.api.e2b._sandboxes import MAX_FORKS, SOURCE, TEMPLATES, E2bApi
from worldrt.host.api.e2b._serve import DEFAULT_LISTEN, parse_listen, serve_e2b_api

__all__ = ["E2bApi", "create_app", "serve_e2b_api", "parse_listen", "DEFAULT_LISTEN", "SOURCE", "HOME", "TEMPLATES",
           "MAX_FORKS", "ENVD_VERSION"]
