"""``worldrt api serve e2b`` as a real process; the official e2b SDKs reach it through the three variables
a user sets (E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.api_servers import HttpApiServerProcess


class E2bApiServer(HttpApiServerProcess):
    """``worldrt api serve e2b`` with state in ``home``, for the host at ``host`` (a running one) or an
    embedded one; ``key`` is the API key it requires (its E2B_API_KEY)."""

    kind, key_var, ready_path = "e2b", "E2B_API_KEY", "/v2/sandboxes"

    def __init__(self, home: Path, key: str = "e2b-test-key", *, host: str | None = None,
                 args: tuple[str, ...] = ()) -> None:
        super().__init__(home, key, host=host, args=args)

    def ready_headers(self) -> dict[str, str]:
        return {"X-API-KEY": self.key}

    @contextmanager
    def environment(self, key: str | None = None) -> Iterator[None]:
        """The three variables a user sets, for the SDK calls made inside."""
        wanted = {"E2B_API_URL": self.url, "E2B_SANDBOX_URL": self.url, "E2B_API_KEY": key or self.key}
        saved = {name: os.environ.get(name) for name in wanted}
        os.environ.update(wanted)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
