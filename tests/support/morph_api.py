"""``worldrt api serve morph`` as a real process, and the official morphcloud SDK as its client."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.support.api_servers import HttpApiServerProcess, free_port

# One transport instead of the SDK's 32: a client is made in 0.2 s instead of about 5 s.
os.environ.setdefault("MORPH_HTTP_TRANSPORT_SHARDS", "1")
# No SSH server answers here: a call that needs one fails after 1 s, not 300 s.
os.environ.setdefault("MORPH_SSH_TOTAL_TIMEOUT_SECS", "1")


class MorphApiServer(HttpApiServerProcess):
    """``worldrt api serve morph`` with state in ``home``, for the host at ``host`` (a running one) or an
    embedded one (``host=None`` and no host in ``home``); ``key`` is the API key it requires."""

    kind, key_var, ready_path = "morph", "MORPH_API_KEY", "/image"

    def __init__(self, home: Path, key: str = "test-key", *, host: str | None = None, args: tuple[str, ...] = ()) -> None:
        super().__init__(home, key, host=host, args=args)
        self.base_url = self.url

    @staticmethod
    def url_of(port: int) -> str:
        return f"http://127.0.0.1:{port}/api"

    def ready_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def client(self, key: str | None = None) -> Any:
        from morphcloud.api import MorphCloudClient

        return MorphCloudClient(api_key=key or self.key, base_url=self.base_url)


__all__ = ["MorphApiServer", "free_port"]
