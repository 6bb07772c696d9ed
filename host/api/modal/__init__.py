"""Modal's API on worldrt: ``worldrt api serve modal`` serves ``modal.client.ModalClient`` and
``modal.task_command_router.TaskCommandRouter`` on one loopback h2c port, so code written for the official
``modal`` SDK runs unchanged against worldrt's modal provider (``MODAL_SERVER_URL=http://127.0.0.1:8790``
and the server's token pair). Every call goes through the host (source ``modal-api``) and is recorded.

Needs the optional extra ``world-runtime[modal]``: the servicers are built on the stubs shipped in the
``modal`` wheel (``modal_proto``), imported, never copied. Importing this package without it fails with
the ``pip install`` line to run.
"""

try:
    import modal_proto  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("worldrt's Modal API needs the modal SDK: pip install 'world-runtime[modal]'") from exc

from worldrt.host.api.modal._images import builder_version
from worldrt.host.api.modal._sandboxes import SOURCE
from worldrt.host.api.modal._serve import DEFAULT_LISTEN, parse_listen, profile, serve_modal_api

__all__ = ["serve_modal_api", "parse_listen", "profile", "DEFAULT_LISTEN", "SOURCE", "builder_version"]
