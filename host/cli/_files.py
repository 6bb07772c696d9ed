"""`worldrt files stat|mkdir|mv|rm|watch`: the rest of an instance's filesystem, built on ``worldrt.Client``
(``inst.files``), beside `files write|read|ls` (host/cli/_images.py adds these to its group).

Like every instance command they need a running host. ``watch`` prints one line per change as it
happens (``--json``: one JSON object per line) until the folder goes, its --timeout passes or the instance
ends; a failed call is one line on stderr and the exit status of its error's kind.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import TYPE_CHECKING, Any

from worldrt.host.cli._common import Parents, emit

if TYPE_CHECKING:
    from worldrt.client import FileInfo, Files


def _files(args: argparse.Namespace) -> tuple[Any, Files]:
    from worldrt.host.cli._instances import client

    rt = client(args)
    return rt, rt.instance(args.instance, provider=args.provider).files


def _entry(info: FileInfo) -> dict[str, Any]:
    data = dataclasses.asdict(info)
    data["modified_at"] = info.modified_at.isoformat() if info.modified_at else None
    return data


def files_stat(args: argparse.Namespace) -> int:
    rt, files = _files(args)
    with rt:
        info = files.stat(args.path)
    emit(args, _entry(info), lambda: print(f"{info.kind} {info.size} {info.mode:o} {info.path}"))
    return 0


def files_mkdir(args: argparse.Namespace) -> int:
    rt, files = _files(args)
    with rt:
        made = files.mkdir(args.path, parents=args.parents, mode=int(args.mode, 8) if args.mode else None)
    emit(args, {"path": args.path, "created": made}, lambda: print(f"{'made' if made else 'there'} {args.path}"))
    return 0


def files_mv(args: argparse.Namespace) -> int:
    rt, files = _files(args)
    with rt:
        info = files.move(args.source, args.destination, overwrite=args.force)
    emit(args, _entry(info), lambda: print(info.path))
    return 0


def files_rm(args: argparse.Namespace) -> int:
    rt, files = _files(args)
    with rt:
        removed = files.remove(args.path, recursive=args.recursive)
    emit(args, {"path": args.path, "removed": removed}, lambda: print(f"removed {removed}"))
    return 0


def files_watch(args: argparse.Namespace) -> int:
    rt, files = _files(args)
    with rt:
        for event in files.watch(args.path, recursive=args.recursive, timeout_s=args.timeout):
            if args.json:
                print(json.dumps(dataclasses.asdict(event)), flush=True)
            else:
                moved = f"{event.old_path} -> " if event.old_path else ""
                extra = f" ({event.dropped} lost)" if event.dropped else ""
                print(f"{event.kind} {moved}{event.path}{'/' if event.is_dir else ''}{extra}", flush=True)
    return 0


def add_file_commands(files: Any, parents: Parents, provider: argparse.ArgumentParser) -> None:
    """Add stat, mkdir, mv, rm and watch to the `files` group ``files``."""

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = files.add_parser(name, parents=[parents.common, provider], help=help_text)
        parser.add_argument("instance", metavar="INSTANCE")
        return parser

    stat = command("stat", "one entry (a symlink itself)")
    stat.add_argument("path", nargs="?", default="", metavar="PATH")
    stat.set_defaults(func=files_stat)
    mkdir = command("mkdir", "make a folder")
    mkdir.add_argument("path", metavar="PATH")
    mkdir.add_argument("-p", "--parents", action="store_true", help="make missing parents; no error if it is there")
    mkdir.add_argument("--mode", metavar="OCTAL", help="permission bits (default 755)")
    mkdir.set_defaults(func=files_mkdir)
    mv = command("mv", "rename a file or folder within the workspace")
    mv.add_argument("source", metavar="SOURCE")
    mv.add_argument("destination", metavar="DESTINATION")
    mv.add_argument("-f", "--force", action="store_true", help="replace what is at the destination")
    mv.set_defaults(func=files_mv)
    rm = command("rm", "remove a file, a symlink or an empty folder")
    rm.add_argument("path", metavar="PATH")
    rm.add_argument("-r", "--recursive", action="store_true", help="a folder and everything in it")
    rm.set_defaults(func=files_rm)
    watch = command("watch", "print changes under a folder as they happen")
    watch.add_argument("path", nargs="?", default="", metavar="PATH")
    watch.add_argument("-r", "--recursive", action="store_true", help="its sub-folders too")
    watch.add_argument("--timeout", type=int, metavar="S", help="end after S seconds (default: the provider's most)")
    watch.set_defaults(func=files_watch)
