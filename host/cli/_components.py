"""`worldrt component`: build, inspect and run verse components."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from worldrt.host.cli._common import (
    Commands,
    Parents,
    as_dict,
    component_text,
    console,
    emit,
    err_console,
    home,
    key_value,
    session,
    show_component_output,
    table,
)
from worldrt.v1 import host_pb, pb
from worldrt.wit import LATEST, WIT_VERSIONS


def component_build(args: argparse.Namespace) -> int:
    from worldrt.host.runtime import build_component
    from worldrt.wit import wit_dir

    tool = "npm and its build script" if (Path(args.dir) / "package.json").is_file() else "componentize-py"
    with console.status(f"building {args.dir} with {tool} against worldrt:verse@{args.wit_version}"):
        result = build_component(args.dir, args.output, wit_dir=wit_dir(args.wit_version))
    data = {"path": str(result.path), "size_bytes": result.size_bytes, "seconds": round(result.seconds, 2),
            "wit_version": args.wit_version}
    emit(args, data, lambda: console.print(
        f"built {result.path} ({result.size_bytes / 2**20:.1f} MiB) against worldrt:verse@{args.wit_version} "
        f"in {result.seconds:.1f} s"))
    return 0


def component_inspect(args: argparse.Namespace) -> int:
    from worldrt.host.runtime import inspect_component

    info = inspect_component(args.file, cache_dir=home(args) / "cache" / "components")
    data = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(info).items()}

    def render() -> None:
        rows = [["import", name, "; ".join(f"{f}: {sig}" for f, sig in funcs.items())]
                for name, funcs in info.imports.items()]
        rows += [["export", name, sig] for name, sig in info.exports.items()]
        world = ", ".join(f"worldrt:verse@{v}" for v in info.wit_versions) or "no worldrt:verse import"
        console.print(table(f"{info.path} ({info.size_bytes} bytes, sha256 {info.digest[:12]}; {world})",
                             ["kind", "name", "functions"], rows))
        if info.problem:
            console.print(f"[yellow]does not fit the verse world:[/yellow] {info.problem}")

    emit(args, data, render)
    return 0 if info.problem is None else 1


def component_run(args: argparse.Namespace) -> int:
    links = [key_value(item) for item in args.link]
    with session(args) as host:
        info = host.load_component(host_pb.LoadComponentRequest(path=args.file))
        for interface, provider in links:
            host.put_link(pb.LinkConfig(source_component=info.name, interfaces=[interface],
                                        target_provider=provider))
        calls: list[dict[str, Any]] = []
        output = {"stdout": bytearray(), "stderr": bytearray()}

        def on_event(event: host_pb.InvokeEvent) -> None:
            if event.HasField("output"):
                # The component's stdout and stderr: into the JSON with --json, else to stderr.
                if args.json:
                    output.setdefault(event.output.stream, bytearray()).extend(event.output.data)
                else:
                    show_component_output(event)
            elif event.HasField("call"):
                calls.append(as_dict(event.call))
                if not args.json:
                    c = event.call
                    mark = f" [red]{c.error}[/red]" if c.error else ""
                    startup = f" (start-up {c.startup_ms:.0f} ms)" if c.startup_ms >= 1 else ""
                    err_console.print(f"  {c.interface}.{c.operation} → {c.provider_id} "
                                      f"{c.latency_ms:.1f} ms{startup}{mark}")
            elif event.HasField("log") and not args.json:
                err_console.print(f"  {event.log}")

        outcome = host.invoke(host_pb.InvokeRequest(component_id=info.component_id, verse_id=args.verse,
                                                    args=args.args, export=args.export), on_event)
    data = {"ok": outcome.ok, "value": outcome.value, "duration_ms": outcome.duration_ms,
            "provider_calls": outcome.provider_calls, "component": info.name, "calls": calls,
            "stdout": component_text(bytes(output["stdout"])), "stderr": component_text(bytes(output["stderr"]))}
    try:
        data["value"] = json.loads(outcome.value)
    except (json.JSONDecodeError, TypeError):
        pass

    def render() -> None:
        if outcome.ok:
            console.print_json(outcome.value) if isinstance(data["value"], (dict, list)) else console.print(
                outcome.value)
            console.print(f"{info.name}: ok in {outcome.duration_ms:.0f} ms, {outcome.provider_calls} provider calls")
        else:
            err_console.print(f"worldrt: {info.name} returned err: {outcome.value}")

    emit(args, data, render)
    return 0 if outcome.ok else 1


def add_commands(commands: Commands, parents: Parents) -> None:
    component = commands.add_parser("component", help="verse components").add_subparsers(dest="action",
                                                                                          required=True)
    build = component.add_parser("build", parents=[parents.common],
                                 help="build a component: Python with componentize-py, JavaScript (package.json) with npm")
    build.add_argument("dir")
    build.add_argument("-o", "--output", required=True)
    build.add_argument("--wit-version", choices=WIT_VERSIONS, default=LATEST,
                       help=f"the worldrt:verse version to build against (default {LATEST}, the latest)")
    build.set_defaults(func=component_build)
    inspect = component.add_parser("inspect", parents=[parents.common], help="imports, exports and size of a component")
    inspect.add_argument("file")
    inspect.set_defaults(func=component_inspect)
    run = component.add_parser("run", parents=[parents.common], help="run a component's export on a verse")
    run.add_argument("file")
    run.add_argument("--verse", type=int, required=True, help="verse id (u64)")
    run.add_argument("--args", default="", help="the export's string argument")
    run.add_argument("--export", default="run")
    run.add_argument("--link", action="append", default=[], metavar="INTERFACE=PROVIDER",
                     help="link for this component (repeatable; generator defaults to morph)")
    run.set_defaults(func=component_run)

