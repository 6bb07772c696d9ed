"""A worldrt runtime for your own test suites, in a temporary folder, that stops everything it started.

``Runtime.start_local()`` embeds a host in the test process (quickest); ``start_local(server=True)`` runs a
real ``worldrt host serve`` process and connects to it over its socket (as Temporal's
``WorkflowEnvironment.start_local()`` runs a dev server). Either way ``rt.client`` is a ``worldrt.Client``
(``AsyncRuntime``: an ``AsyncClient``).

Invariants: all state (registry, sockets, tokens, daemons' folders) lives in the runtime's folder, and
no setting of the environment (``WORLDRT_HOST``, ``WORLDRT_STATE_DIR``, ``WORLDRT_DB``) sends it
anywhere else; ``close()`` stops the host, its provider daemons and their sandboxes, waits for them to
end (killing whatever is still there after ``STOP_TIMEOUT_S``) and then removes a folder it made.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Self

from worldrt.client import AsyncClient, Client
from worldrt.host import default_host_address
from worldrt.providers import wait_serving
from worldrt.testing._processes import end, processes_of

STOP_TIMEOUT_S = 30.0
SERVE_TIMEOUT_S = 60.0
# Settings of the caller's environment that would point the runtime's host or client elsewhere.
_OWN_SETTINGS = ("WORLDRT_HOST", "WORLDRT_STATE_DIR", "WORLDRT_DB")


class _Folder:
    """The runtime's folder and, with ``server``, its ``worldrt host serve`` process."""

    def __init__(self, folder: str | os.PathLike[str] | None, server: bool) -> None:
        self.made = folder is None
        self.path = Path(tempfile.mkdtemp(prefix="worldrt-test-") if folder is None else folder).resolve()
        self.path.mkdir(parents=True, exist_ok=True)
        self.address = default_host_address(self.path)
        self.proc: subprocess.Popen[bytes] | None = None
        if server:
            self._serve()

    def _serve(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in _OWN_SETTINGS}
        env["WORLDRT_STATE_DIR"] = str(self.path)
        log_path = self.path / "host.log"
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "worldrt.host.cli", "host", "serve"], cwd=self.path,
                                         env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            wait_serving(self.address, SERVE_TIMEOUT_S, self.proc, log_path=log_path)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the server (if any), then whatever the runtime started that is still running."""
        started = processes_of(self.path)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        end(started | processes_of(self.path), STOP_TIMEOUT_S)
        if self.made:
            shutil.rmtree(self.path, ignore_errors=True)


class Runtime:
    """``with Runtime.start_local() as rt: rt.client.start("morph")``: a host of your test's own, in a
    temporary folder (or ``folder``), stopped with everything it started when the block ends."""

    def __init__(self, folder: _Folder, client: Client) -> None:
        """Use ``Runtime.start_local``."""
        self._folder = folder
        self.client = client

    @classmethod
    def start_local(cls, *, server: bool = False, folder: str | os.PathLike[str] | None = None) -> Runtime:
        """A runtime embedded in this process, or with ``server`` a ``worldrt host serve`` process of its own;
        state in ``folder`` (kept), else in a temporary folder (removed on close)."""
        place = _Folder(folder, server)
        try:
            client = Client.connect(place.address, home=place.path, db=place.path / "world.duckdb", embed=not server)
        except BaseException:
            place.close()
            raise
        return cls(place, client)

    @property
    def folder(self) -> Path:
        """Where the runtime keeps its state."""
        return self._folder.path

    @property
    def address(self) -> str:
        """The server's address (``unix:FOLDER/host.sock``), for a second client of a ``server`` runtime."""
        return self._folder.address

    def close(self) -> None:
        """Stop the host, its providers and their instances; remove the folder if the runtime made it."""
        try:
            self.client.close()
        finally:
            self._folder.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncRuntime:
    """``Runtime`` for asyncio: ``async with await AsyncRuntime.start_local() as rt: await rt.client.start()``."""

    def __init__(self, folder: _Folder, client: AsyncClient) -> None:
        """Use ``AsyncRuntime.start_local``."""
        self._folder = folder
        self.client = client

    @classmethod
    async def start_local(cls, *, server: bool = False, folder: str | os.PathLike[str] | None = None) -> AsyncRuntime:
        """See ``Runtime.start_local``."""
        place = await asyncio.to_thread(_Folder, folder, server)
        try:
            client = await AsyncClient.connect(place.address, home=place.path, db=place.path / "world.duckdb",
                                               embed=not server)
        except BaseException:
            await asyncio.to_thread(place.close)
            raise
        return cls(place, client)

    @property
    def folder(self) -> Path:
        """Where the runtime keeps its state."""
        return self._folder.path

    @property
    def address(self) -> str:
        """The server's address (``unix:FOLDER/host.sock``)."""
        return self._folder.address

    async def close(self) -> None:
        """Stop the host, its providers and their instances; remove the folder if the runtime made it."""
        try:
            await self.client.close()
        finally:
            await asyncio.to_thread(self._folder.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
