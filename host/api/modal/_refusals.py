"""What the Modal-compatible API does not serve, and the sentence that says why, for every RPC of the two
services that is not implemented here: each answers UNIMPLEMENTED with it (never a silent success)."""

from __future__ import annotations

_SANDBOXES_ONLY = "worldrt serves Modal Sandboxes (create, exec, stdio, files, snapshots, tags, names) only"
_BY_PREFIX = (
    (("Function", "Class", "Map", "Attempt", "Input", "Output", "Container", "Schedule", "WebUrl", "Webhook"),
     "functions and classes run on Modal's cloud, not here: " + _SANDBOXES_ONLY),
    (("Volume",), "Modal volumes do not exist here: use sb.filesystem, or snapshot_filesystem() for an image"),
    (("SharedVolume", "NetworkFileSystem"), "network file systems do not exist here"),
    (("Queue", "Dict"), "Modal queues and dicts do not exist here: " + _SANDBOXES_ONLY),
    (("Proxy", "Tunnel", "Domain", "Port"), "worldrt sandboxes have no network (bubblewrap --unshare-net)"),
    (("Mount",), "local files cannot be mounted here: write them with sb.filesystem.write_* instead"),
    (("Workspace", "Token", "Environment", "User", "Billing", "Audit", "Member", "Cluster", "Notebook"),
     "account, workspace and billing calls have no meaning on a local server"),
    (("App",), "apps are names here (App.lookup); deploying and running apps is Modal's cloud: " + _SANDBOXES_ONLY),
    (("Sandbox", "Task"), "this Sandbox call is not served here: V1 sandboxes (GPU, NFS, PTY or MODAL_SANDBOX_V2=0), "
                          "sidecars, memory snapshots, pausing and connect tokens do not exist on this machine"),
    (("Secret",), "only secrets made by name (modal.Secret.objects.create) or from_dict are served here"),
    (("Image",), "only debian_slim() with pip_install() and snapshot images are built here"),
)


def why_not(method: str) -> str:
    """The sentence UNIMPLEMENTED carries for ``method`` (an RPC name)."""
    for prefixes, why in _BY_PREFIX:
        if method.startswith(prefixes):
            return f"{method} is not supported by worldrt's Modal-compatible API: {why}"
    return f"{method} is not supported by worldrt's Modal-compatible API: {_SANDBOXES_ONLY}"
