"""`worldrt image` and `worldrt files`: build, list, inspect and remove images; files in and out of an instance."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from worldrt.host.cli._common import CliError, Commands, Parents, as_dict, console, emit, err_console, session, table
from worldrt.v1 import host_pb, pb


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _when(image: pb.Image) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(image.created_at.seconds))


def image_build(args: argparse.Namespace) -> int:
    requirements = ""
    if args.requirements:
        try:
            requirements = Path(args.requirements).read_text()
        except OSError as exc:
            raise CliError(f"--requirements: cannot read {args.requirements}: {exc.strerror}") from None
    files = []
    for item in args.file:
        source, _, dest = item.partition(":")
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise CliError(f"--file: cannot read {source}: {exc.strerror}") from None
        files.append(pb.FileEntry(path=dest or Path(source).name, data=data, mode=Path(source).stat().st_mode & 0o777))
    request = host_pb.HostBuildImageRequest(provider=args.provider, build=pb.BuildImageRequest(
        name=args.name, pip=args.pip, requirements=requirements, files=files, index_url=args.index_url or "",
        timeout_s=args.timeout or 0, max_size_mb=args.max_size_mb or 0, replace=args.replace))
    started = time.monotonic()
    events: list[dict[str, Any]] = []
    with session(args) as host:
        if args.json or not sys.stderr.isatty():
            def note(event: Any) -> None:
                events.append(as_dict(event.progress))
                if not args.json:
                    err_console.print(f"  {event.progress.stage}: {event.progress.message}", markup=False)

            image = host.build_image(request, note)
        else:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            with Progress(TextColumn("[bold]{task.fields[stage]:<12}"), BarColumn(), TextColumn("{task.description}"),
                          TimeElapsedColumn(), console=err_console.rich, transient=True) as bar:
                task = bar.add_task(f"building {args.name}", total=1.0, stage="starting")

                def show(event: Any) -> None:
                    p = event.progress
                    events.append(as_dict(p))
                    bar.update(task, completed=p.fraction, stage=p.stage, description=p.message[:70])

                image = host.build_image(request, show)
    took = time.monotonic() - started
    emit(args, {"image": as_dict(image), "progress": events, "seconds": round(took, 3)}, lambda: console.print(
        f"image {', '.join(image.names)} {image.digest[:12]}: {len(image.packages)} packages, {_size(image.size_bytes)}"
        f" ({'the same request was built before' if image.cached else f'built in {took:.1f} s'})"))
    return 0


def _index(image: pb.Image) -> str:
    return image.index_url or ("" if image.layer_digest else image.source)


def image_list(args: argparse.Namespace) -> int:
    with session(args) as host:
        reply = host.list_images(host_pb.HostImageRequest(provider=args.provider))
    emit(args, {"images": [as_dict(i) for i in reply.images]}, lambda: console.print(table(
        "images", ["names", "digest", "index", "python", "packages", "size", "created"],
        [[", ".join(i.names), i.digest[:12], _index(i)[:48], i.python, " ".join(i.packages)[:80], _size(i.size_bytes),
          _when(i)] for i in reply.images])))
    return 0


def image_inspect(args: argparse.Namespace) -> int:
    with session(args) as host:
        image = host.inspect_image(host_pb.HostImageRequest(provider=args.provider, image=args.image))
    emit(args, as_dict(image), lambda: console.print(table(
        f"image {args.image}", ["field", "value"],
        [["digest", image.digest],
         ["layer", image.layer_digest or "(not a content digest: the default image, or built before they were)"],
         ["index", image.index_url], ["names", ", ".join(f"{n} (owner {image.owners.get(n, 'operator')})"
                                                        for n in image.names)],
         ["python", image.python],
         ["requested", " ".join(image.requested)], ["packages", "\n".join(image.packages)],
         ["files", "\n".join(f"{k} {v[:12]}" for k, v in sorted(image.files.items()))],
         ["size", _size(image.size_bytes)], ["source", image.source], ["created", _when(image)],
         ["build", f"{image.build_s:.1f} s" if image.build_s else ""]])))
    return 0


def image_rm(args: argparse.Namespace) -> int:
    with session(args) as host:
        image = host.delete_image(host_pb.HostImageRequest(provider=args.provider, image=args.image))
    emit(args, as_dict(image), lambda: console.print(
        f"removed {args.image}" + (f" (the layer stays for {', '.join(image.names)})" if image.names else
                                   f" and its layer {image.digest[:12]}")))
    return 0


def files_write(args: argparse.Namespace) -> int:
    entries = []
    for item in args.files:
        source, _, dest = item.partition(":")
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read {source}: {exc.strerror}") from None
        entries.append(pb.FileEntry(path=dest or Path(source).name, data=data,
                                    mode=Path(source).stat().st_mode & 0o777))
    with session(args) as host:
        reply = host.write_files(host_pb.HostWriteFilesRequest(
            provider=args.provider, files=pb.WriteFilesRequest(instance_id=args.instance, files=entries)))
    emit(args, as_dict(reply), lambda: console.print(f"wrote {reply.files} files, {_size(reply.bytes)}"))
    return 0


def files_read(args: argparse.Namespace) -> int:
    out = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: SIM115 - closed below

    def write(chunk: Any) -> None:
        out.write(chunk.data)

    try:
        with session(args) as host:
            last = host.read_file(host_pb.HostReadFileRequest(provider=args.provider, read=pb.ReadFileRequest(
                instance_id=args.instance, path=args.path)), write)
            out.write(last.data)
    finally:
        if args.output:
            out.close()
        else:
            out.flush()
    return 0


def files_ls(args: argparse.Namespace) -> int:
    with session(args) as host:
        reply = host.list_files(host_pb.HostListFilesRequest(
            provider=args.provider, list=pb.ListFilesRequest(instance_id=args.instance, path=args.path)))
    emit(args, as_dict(reply), lambda: console.print(table(
        f"/workspace/{reply.path}".rstrip("/"), ["name", "kind", "size", "mode"],
        [[e.name, e.kind, e.size, f"{e.mode:o}"] for e in reply.entries])))
    return 0


def add_commands(commands: Commands, parents: Parents) -> None:
    provider = argparse.ArgumentParser(add_help=False)
    provider.add_argument("--provider", default="morph", choices=("morph", "modal"),
                          help="the sandbox provider that keeps the images (default morph; modal shares them)")
    image = commands.add_parser("image", help="images instances start from").add_subparsers(dest="action",
                                                                                           required=True)
    build = image.add_parser("build", parents=[parents.common, provider],
                             help="build NAME from PyPI packages in a sandbox of its own (the same request reuses)")
    build.add_argument("name", metavar="NAME")
    build.add_argument("--pip", nargs="+", default=[], metavar="PKG", help="packages as pip takes them")
    build.add_argument("--requirements", metavar="FILE", help="a requirements file")
    build.add_argument("--file", action="append", default=[], metavar="SRC[:PATH]",
                       help="a file the image carries, at /opt/python-env/files/PATH inside")
    build.add_argument("--index-url", help="the package index (default PyPI)")
    build.add_argument("--timeout", type=int, metavar="S", help="seconds the build may take")
    build.add_argument("--max-size-mb", type=int, metavar="MB", help="the largest the image may be")
    build.add_argument("--replace", action="store_true",
                       help="move NAME to this build's image when it names another already (its owner only)")
    build.set_defaults(func=image_build)
    image.add_parser("list", parents=[parents.common, provider], help="every image").set_defaults(func=image_list)
    inspect = image.add_parser("inspect", parents=[parents.common, provider], help="one image's packages and files")
    inspect.add_argument("image", metavar="NAME|DIGEST")
    inspect.set_defaults(func=image_inspect)
    rm = image.add_parser("rm", parents=[parents.common, provider], help="remove a name (and the unused layer)")
    rm.add_argument("image", metavar="NAME|DIGEST")
    rm.set_defaults(func=image_rm)

    files = commands.add_parser("files", help="files of an instance's workspace").add_subparsers(
        dest="action", required=True)
    write = files.add_parser("write", parents=[parents.common, provider], help="copy local files into it")
    write.add_argument("instance", metavar="INSTANCE")
    write.add_argument("files", nargs="+", metavar="SRC[:PATH]")
    write.set_defaults(func=files_write)
    read = files.add_parser("read", parents=[parents.common, provider], help="a file's bytes, to stdout or -o")
    read.add_argument("instance", metavar="INSTANCE")
    read.add_argument("path", metavar="PATH")
    read.add_argument("-o", "--output", metavar="FILE")
    read.set_defaults(func=files_read)
    ls = files.add_parser("ls", parents=[parents.common, provider], help="a folder's entries")
    ls.add_argument("instance", metavar="INSTANCE")
    ls.add_argument("path", nargs="?", default="", metavar="PATH")
    ls.set_defaults(func=files_ls)
    from worldrt.host.cli._files import add_file_commands

    add_file_commands(files, parents, provider)
