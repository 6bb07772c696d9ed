"""The watch helper run inside a sandbox for ``sb.filesystem.watch(path)`` outside its workspace (``/tmp``,
say), where worldrt's own WatchFiles does not reach: ``WATCHER`` (a small stdlib-only Python program,
written here) polls the path with ``os.scandir`` and prints one JSON event per line, and this server reads
those lines as untrusted input (``parse_line``, ``parse_error``).

The helper is a process of the sandbox like any exec: it sees what a process there may see, with the
sandbox's uid and confinement; this server never opens a path of the sandbox.

Invariants:
- The helper is bounded: it polls every ``POLL_S``, keeps at most ``MAX_ENTRIES`` entries (past them it
  fails, naming the cap), ends at its ``timeout_secs``, at its stdin's end, or when the watched path goes.
- Polling sees the state at each poll: a file made and changed between two polls is one Create; a rename
  is seen as one when the same inode leaves one path and appears at another (``Rename``, old path then new).
- A line from the helper is accepted only as ``{"event_type": KIND, "paths": [1 or 2 absolute paths]}``,
  at most ``MAX_LINE`` bytes; anything else is ``BadLine`` (the watch ends with the reason); the error it
  leaves on stderr is read at most ``MAX_ERROR`` bytes and its kind and message checked.
"""

from __future__ import annotations

import json

POLL_S = 0.2
MAX_ENTRIES = 10_000
MAX_LINE = 16 * 1024
MAX_PATH = 4096
MAX_ERROR = 4096
KINDS = frozenset({"Create", "Modify", "Remove", "Rename", "Unknown"})
ERROR_KINDS = frozenset({"NotFound", "PermissionDenied", "NotDirectory", "IsDirectory", "Unsupported", "Other"})

WATCHER = r'''
import errno, json, os, select, stat, sys, time

POLL_S = %(poll)r
MAX_ENTRIES = %(entries)r

def fail(kind, message):
    sys.stderr.write(json.dumps({"error_kind": kind, "message": message}))
    sys.stderr.flush()
    os._exit(1)

def emit(kind, paths):
    sys.stdout.write(json.dumps({"event_type": kind, "paths": paths}) + "\n")

def key(st):
    if stat.S_ISDIR(st.st_mode):  # a folder's own times change with its entries: not an event of its own
        return (st.st_dev, st.st_ino, st.st_mode, 0, 0)
    return (st.st_dev, st.st_ino, st.st_mode, st.st_mtime_ns, st.st_size)

def scan(root, single, recursive):
    if single:
        try:
            return {root: key(os.lstat(root))}
        except FileNotFoundError:
            return None
    found = {}
    folders = [root]
    while folders:
        folder = folders.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    found[entry.path] = key(st)
                    if len(found) > MAX_ENTRIES:
                        fail("Other", "%%s holds more than %%d entries, more than one watch here follows: watch a "
                                      "narrower folder" %% (root, MAX_ENTRIES))
                    if recursive and stat.S_ISDIR(st.st_mode):
                        folders.append(entry.path)
        except FileNotFoundError:
            if folder == root:
                return None
        except NotADirectoryError:
            if folder == root:
                return None
    return found

def main():
    args = json.loads(sys.argv[1])["Watch"]
    path = args.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        fail("Other", "watch() needs an absolute path")
    timeout = args.get("timeout_secs")
    deadline = time.monotonic() + timeout if isinstance(timeout, int) and timeout > 0 else None
    try:
        root = os.path.realpath(path)
        st = os.stat(root)
    except FileNotFoundError:
        fail("NotFound", "No such file or directory: %%s" %% path)
    except PermissionError:
        fail("PermissionDenied", "Permission denied: %%s" %% path)
    except OSError as exc:
        fail("Other", exc.strerror or str(exc))
    single = not stat.S_ISDIR(st.st_mode)
    if single:
        root = os.path.realpath(path)
    recursive = bool(args.get("recursive")) and not single
    try:
        before = scan(root, single, recursive)
    except PermissionError:
        fail("PermissionDenied", "Permission denied: %%s" %% path)
    while True:
        wait = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
        if wait <= 0:
            return
        readable, _, _ = select.select([0], [], [], wait)
        if readable and not os.read(0, 4096):
            return  # stdin ended: the watch was left
        try:
            after = scan(root, single, recursive)
        except PermissionError:
            after = None
        if after is None:
            emit("Remove", [root])
            sys.stdout.flush()
            return
        gone = {p: k for p, k in before.items() if p not in after}
        made = {p: k for p, k in after.items() if p not in before}
        moved_to = {k[:2]: p for p, k in made.items()}
        for p, k in sorted(gone.items()):
            new = moved_to.pop(k[:2], None)
            if new is not None:
                del made[new]
                emit("Rename", [p, new])
            else:
                emit("Remove", [p])
        for p in sorted(made):
            emit("Create", [p])
        for p in sorted(after):
            if p in before and before[p] != after[p]:
                emit("Modify", [p])
        sys.stdout.flush()
        before = after

try:
    main()
except KeyboardInterrupt:
    pass
except BrokenPipeError:
    os._exit(0)
'''


class BadLine(Exception):
    """A line of the helper's output that is not an event this server accepts."""


def command_line(argv_json: str) -> list[str]:
    """The argv that runs the helper for the Watch command ``argv_json`` (the SDK's JSON, as it gave it)."""
    source = WATCHER % {"poll": POLL_S, "entries": MAX_ENTRIES}
    return ["python3", "-I", "-S", "-c", source, argv_json]


def parse_line(line: bytes) -> tuple[str, list[str]]:
    """(event kind, paths) of one line of the helper's output (without its newline); BadLine otherwise."""
    if len(line) > MAX_LINE:
        raise BadLine(f"a line of {len(line)} bytes, above the {MAX_LINE} one may have")
    try:
        event = json.loads(line)
    except ValueError:
        raise BadLine(f"a line that is not JSON: {line[:80]!r}") from None
    if not isinstance(event, dict) or set(event) != {"event_type", "paths"}:
        raise BadLine(f"a line that is not an event: {line[:80]!r}")
    kind, paths = event["event_type"], event["paths"]
    if kind not in KINDS:
        raise BadLine(f"an event of an unknown kind: {str(kind)[:40]!r}")
    if (not isinstance(paths, list) or not 1 <= len(paths) <= 2
            or not all(isinstance(p, str) and p.startswith("/") and "\0" not in p and len(p) <= MAX_PATH
                       for p in paths)):
        raise BadLine(f"an event whose paths are not 1 or 2 absolute paths: {line[:80]!r}")
    return kind, paths


def parse_error(stderr: bytes) -> tuple[str, str]:
    """(error kind, message) of what the helper left on stderr, checked; a plain reason when it is not one."""
    try:
        error = json.loads(stderr[:MAX_ERROR])
    except ValueError:
        error = None
    if (isinstance(error, dict) and error.get("error_kind") in ERROR_KINDS
            and isinstance(error.get("message"), str)):
        return error["error_kind"], error["message"][:1000]
    return "Other", "the watch helper in the sandbox ended with an error it did not describe"
