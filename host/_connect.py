"""Which host a caller means, from its settings and the defaults: the one place the CLI and the Python
client decide it, so both reach the same host by the same rule.

The address is the one given, else ``$WORLDRT_HOST``, else ``unix:HOME/host.sock``; the state folder
HOME is the one given, else ``$WORLDRT_STATE_DIR`` or ``.worldrt``; the registry file the one given, else
``$WORLDRT_DB`` or ``HOME/world.duckdb`` (used only by an embedded host). The token is the one given,
else the one in ``token_file``, else ``$WORLDRT_TOKEN``, else ``HOME/host.token``: the session's
``token`` is the one its calls carry. TLS settings are the ones given, else ``$WORLDRT_TLS_CA``, ``$WORLDRT_TLS_CERT``
and ``$WORLDRT_TLS_KEY``. ``Session`` then uses the host answering there, or embeds one when the
address is the local socket (a ``HOST:PORT`` that does not answer is an error).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from worldrt.host._client import Session, client_token
from worldrt.host._paths import default_db, default_home, default_host_address
from worldrt.providers import ClientTls, read_token_file

HOST_ENV = "WORLDRT_HOST"
PathLike = str | os.PathLike[str]


def host_session(address: str | None = None, *, home: PathLike | None = None, db: PathLike | None = None,
                 token: str | None = None, token_file: PathLike | None = None, tls_ca: PathLike | None = None,
                 tls_cert: PathLike | None = None, tls_key: PathLike | None = None,
                 start: Sequence[str] = (), warm: int | None = None) -> Session:
    """The session with the host these settings (and the defaults for what they leave out) name; an
    embedded host starts the providers in ``start`` while it loads, and keeps ``warm`` sandboxes started
    ahead in each sandbox provider (see ``Session``)."""
    state = Path(home) if home is not None else default_home()
    target = address or os.environ.get(HOST_ENV) or default_host_address(state)
    if token is None and token_file is not None:
        token = read_token_file(Path(token_file))
    if token is None:
        token = client_token(state)
    return Session(target, Path(db) if db is not None else default_db(), state, token=token,
                   tls=ClientTls.from_env(tls_ca, tls_cert, tls_key), start=start,
                   warm=warm)
