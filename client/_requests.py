"""The Host API messages the client sends, built from its arguments: one builder per operation, shared by
``Client`` and ``AsyncClient`` so both send exactly the same requests.

Invariants: builders do no I/O and check only what the host could not say better (an ``exec`` with
neither code nor argv, a negative timeout, a merge of instances on different providers); a path the
host reads is made absolute here, since it means this process's working directory. The client's calls
to a provider travel the generator link of the source ``client-PROVIDER`` (``source_for``), which
the client puts when that source has no link of its own to the provider: a link the user put for it
(``worldrt link put generator=morph --source client-morph --set memory_mb=256``) is kept and applies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from worldrt.client._types import Limits, Oracle
from worldrt.errors import InvalidArgument
from worldrt.v1 import host_pb, pb

SOURCE_PREFIX = "client-"
DEFAULT_PROVIDER = "morph"
FileData = bytes | str


def source_for(provider: str) -> str:
    """The source whose generator link carries the client's calls to ``provider``."""
    return f"{SOURCE_PREFIX}{provider}"


def link_to_put(links: Iterable[pb.LinkConfig], provider: str) -> pb.LinkConfig | None:
    """The link to put so that ``source_for(provider)`` reaches ``provider``; None when one already does."""
    source = source_for(provider)
    for link in links:
        if (link.source_component == source and "generator" in link.interfaces and link.name in ("", "default")
                and link.target_provider == provider):
            return None
    return pb.LinkConfig(source_component=source, interfaces=["generator"], target_provider=provider)


def provider_call(provider: str, field: str, message: Any) -> host_pb.ProviderCallRequest:
    """A CallProvider request for one generator operation (``field``: start, stop, snapshot, branch,
    execute or merge) on ``provider``."""
    request = host_pb.ProviderCallRequest(source=source_for(provider))
    getattr(request, field).CopyFrom(message)
    return request


def start(*, image: str | None, limits: Limits | None, ttl_s: int | None, metadata: Mapping[str, str] | None,
          snapshot_id: str = "") -> pb.StartRequest:
    """A Start request; None means the provider's default for each."""
    if ttl_s is not None and ttl_s < 0:
        raise InvalidArgument(f"ttl_s must be 0 (the provider's default) or more, got {ttl_s}")
    request = pb.StartRequest(image=image or "", snapshot_id=snapshot_id, ttl_s=ttl_s or 0,
                              metadata=dict(metadata or {}))
    if limits is not None:
        request.limits.CopyFrom(limits.to_pb())
    return request


def execute(instance_id: str, code: str, *, language: str, argv: Sequence[str] | None,
            env: Mapping[str, str] | None, timeout_s: float | None) -> pb.ExecuteRequest:
    """An Execute request: ``code`` in ``language``, or ``argv`` as a command (then code is not sent)."""
    if not code and not argv:
        raise InvalidArgument("exec needs code, or a command as argv=[PROGRAM, ARG...]")
    if argv is not None and isinstance(argv, str):
        raise InvalidArgument("argv is a list of strings ([PROGRAM, ARG...]), not one string")
    if timeout_s is not None and timeout_s <= 0:
        raise InvalidArgument(f"timeout_s must be above 0, got {timeout_s}")
    # Only the fields given are set: an exec is the client's hot path, and each keyword costs.
    request = pb.ExecuteRequest(instance_id=instance_id, language=language)
    if argv:
        request.argv.extend(argv)
    else:
        request.code = code
    if env:
        request.env.update(env)
    if timeout_s:
        request.timeout_ms = round(timeout_s * 1000)
    return request


def oracle_of(oracle: Oracle | Mapping[Any, float] | Any, ids: Sequence[str]) -> Oracle:
    """An Oracle from what ``merge`` accepts: an Oracle, scores keyed by instance (or id), or the winner
    itself (an instance or an id)."""
    if isinstance(oracle, Oracle):
        return oracle
    if isinstance(oracle, Mapping):
        return Oracle(scores={_id_of(key): float(score) for key, score in oracle.items()})
    winner = _id_of(oracle)
    if winner not in ids:
        raise InvalidArgument(f"the winner {winner!r} is not one of the merged instances")
    return Oracle(winner=winner)


def _id_of(item: Any) -> str:
    if isinstance(item, str):
        return item
    ident = getattr(item, "id", None)
    if not isinstance(ident, str):
        raise InvalidArgument(f"expected an instance or an instance id, got {type(item).__name__}")
    return ident


def merge_of(instances: Sequence[Any], oracle: Oracle | Mapping[Any, float] | Any) -> tuple[str, pb.MergeRequest]:
    """(provider, Merge request) for instances that all live on one provider."""
    if not instances:
        raise InvalidArgument("merge needs the instances to merge")
    providers = {getattr(i, "provider", None) for i in instances}
    if len(providers) != 1 or None in providers:
        raise InvalidArgument(f"merge takes instances of one provider, got {sorted(map(str, providers))}")
    ids = [_id_of(i) for i in instances]
    return str(providers.pop()), pb.MergeRequest(instance_ids=ids, oracle=oracle_of(oracle, ids).to_pb())


def file_entries(files: Mapping[str, FileData], mode: int | None = None) -> list[pb.FileEntry]:
    """WriteFiles entries: text is written as UTF-8; mode None is the provider's default (0644)."""
    return [pb.FileEntry(path=path, data=data.encode() if isinstance(data, str) else bytes(data), mode=mode or 0)
            for path, data in files.items()]


def build_image(name: str, *, provider: str, pip: Sequence[str], requirements: str | None,
                files: Mapping[str, FileData] | None, index_url: str | None, timeout_s: int | None,
                max_size_mb: int | None) -> host_pb.HostBuildImageRequest:
    """A BuildImage request: pip packages and/or a requirements text, files carried at
    /opt/python-env/files/PATH; None leaves each limit to the provider."""
    if isinstance(pip, str):
        raise InvalidArgument("pip is a list of packages, not one string")
    return host_pb.HostBuildImageRequest(provider=provider, build=pb.BuildImageRequest(
        name=name, pip=list(pip), requirements=requirements or "", files=file_entries(files or {}),
        index_url=index_url or "", timeout_s=timeout_s or 0, max_size_mb=max_size_mb or 0))


def link(interface: str, provider: str, *, source: str, name: str, values: Mapping[str, str] | None,
         secrets: Mapping[str, str] | None, link_id: str | None) -> pb.LinkConfig:
    """A PutLink request for one interface."""
    return pb.LinkConfig(link_id=link_id or "", source_component=source, name=name, interfaces=[interface],
                         target_provider=provider, values=dict(values or {}), secrets=dict(secrets or {}))


def link_id(link: str, *, source: str, name: str) -> str:
    """A link's id: ``link`` itself when it is one (SOURCE/INTERFACE/NAME), else the id of ``source``'s
    link for the interface ``link`` names (the host's ``HostLink.default_id``, which the CLI's ``link del``
    uses too; spelled out here so that a remote client never imports the host's link table)."""
    return link if "/" in link else f"{source}/{link}/{name}"


def wit_folder(version: str | None) -> tuple[str, Path]:
    """(version, its WIT folder) for a build: a released version of worldrt:verse, the latest when None."""
    from worldrt.wit import LATEST, wit_dir

    chosen = version or LATEST
    try:
        return chosen, wit_dir(chosen)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


def absolute(path: str | Path | None) -> str:
    """A path the host reads, made absolute ("" for none)."""
    return str(Path(path).resolve()) if path else ""


def verse(verse_id: int, kind: str, *, component: str | Path | None = None, **fields: Any) -> host_pb.VerseRequest:
    """A RunVerse request of ``kind`` (pipeline, solo, orchestrate or select)."""
    return host_pb.VerseRequest(verse_id=verse_id, kind=kind, component_path=absolute(component), **fields)


_STREAMS = {"both": pb.PROCESS_STREAM_BOTH, "stdout": pb.PROCESS_STDOUT, "stderr": pb.PROCESS_STDERR}


def spawn(instance_id: str, argv: Sequence[str], *, env: Mapping[str, str] | None, cwd: str | None, stdin: bool,
          timeout_s: float | None, tag: str) -> pb.StartProcessRequest:
    """A StartProcess request: ``argv`` run in the instance (its first word looked up on the instance's PATH)."""
    if isinstance(argv, str):
        raise InvalidArgument("argv is a list of strings ([PROGRAM, ARG...]), not one string")
    if not argv:
        raise InvalidArgument("spawn needs a command: argv=[PROGRAM, ARG...]")
    if timeout_s is not None and timeout_s <= 0:
        raise InvalidArgument(f"timeout_s must be above 0, got {timeout_s}")
    return pb.StartProcessRequest(instance_id=instance_id, argv=list(argv), env=dict(env or {}), cwd=cwd or "",
                                  stdin=stdin, timeout_ms=round(timeout_s * 1000) if timeout_s else 0, tag=tag)


def read_output(instance_id: str, process_id: str, stream: str, offset: int, follow: bool,
                ) -> pb.ReadProcessOutputRequest:
    """A ReadProcessOutput request for ``stream`` ("stdout", "stderr" or "both"), each stream from ``offset``."""
    kind = _STREAMS.get(stream)
    if kind is None:
        raise InvalidArgument(f"stream must be stdout, stderr or both, not {stream!r}")
    if offset < 0:
        raise InvalidArgument(f"offset must be 0 or more, got {offset}")
    return pb.ReadProcessOutputRequest(instance_id=instance_id, process_id=process_id, stream=kind,
                                       stdout_offset=offset, stderr_offset=offset, no_wait=not follow)


def signal_number(sig: int | str) -> int:
    """A signal's number from its number, its name ("TERM", "SIGTERM") or a ``signal.Signals``."""
    import signal as signals

    if isinstance(sig, int):
        number = int(sig)
    else:
        text = sig.strip().upper()
        if text.isdigit():
            number = int(text)
        else:
            name = text if text.startswith("SIG") else f"SIG{text}"
            found = signals.Signals.__members__.get(name)
            if found is None:
                raise InvalidArgument(f"unknown signal {sig!r}: give a name (TERM, KILL, INT, HUP) or a number")
            number = int(found)
    if not 0 < number < 65:
        raise InvalidArgument(f"a signal is a number from 1 to 64, not {number}")
    return number
