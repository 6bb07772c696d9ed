"""The SDK's filesystem helper, written here: ``sb.filesystem.*`` execs ``/__modal/.bin/modal-sandbox-fs-tools
'<json command>'`` in the sandbox, and this server runs ``HELPER`` (a small stdlib-only Python program) there
instead, as a process of the sandbox like any exec.

So a file operation reaches exactly what a process in the sandbox may reach (its workspace, ``/tmp``) with
the sandbox's own uid and confinement; the daemon and this server never open a path of the sandbox. The
helper speaks the protocol of Modal's Rust tool as the SDK reads it (``modal/_utils/sandbox_fs_utils.py``):
file bytes on stdout (ReadFile) or from stdin (WriteFile), JSON entries on stdout (ListFiles, Stat), and on
failure a JSON ``{"error_kind", "message"}`` on stderr with exit status 1. ``Watch`` never reaches the
helper: the router serves it with a watch of the host's (``_watch``).
"""

from __future__ import annotations

TOOL_PATH = "/__modal/.bin/modal-sandbox-fs-tools"

HELPER = r'''
import errno, json, os, shutil, stat, sys

def fail(kind, message):
    sys.stderr.write(json.dumps({"error_kind": kind, "message": message}))
    sys.exit(1)

KINDS = {errno.ENOENT: "NotFound", errno.EISDIR: "IsDirectory", errno.ENOTDIR: "NotDirectory",
         errno.EACCES: "PermissionDenied", errno.EPERM: "PermissionDenied", errno.EEXIST: "PathAlreadyExists",
         errno.ENOTEMPTY: "DirectoryNotEmpty", errno.EFBIG: "FileTooLarge", errno.ENOSPC: "NoSpace",
         errno.EROFS: "PermissionDenied"}

def failed(exc):
    fail(KINDS.get(exc.errno, "Other"), exc.strerror or str(exc))

def entry(path):
    st = os.lstat(path)
    kind = "symlink" if stat.S_ISLNK(st.st_mode) else "directory" if stat.S_ISDIR(st.st_mode) else "file"
    return {"name": os.path.basename(path.rstrip("/")) or "/", "path": path, "type": kind, "size": st.st_size,
            "mode": st.st_mode, "permissions": stat.filemode(st.st_mode)[1:], "owner": str(st.st_uid),
            "group": str(st.st_gid), "modified_time": st.st_mtime,
            "symlink_target": os.readlink(path) if kind == "symlink" else None}

def main():
    command = json.loads(sys.argv[1])
    (name, args), = command.items() if isinstance(command, dict) else ((command, {}),)
    path = args.get("path", "")
    try:
        if name == "ReadFile":
            if os.path.isdir(path):
                fail("IsDirectory", "Is a directory")
            with open(path, "rb") as f:
                shutil.copyfileobj(f, sys.stdout.buffer, 1 << 16)
        elif name == "WriteFile":
            parent = os.path.dirname(path)
            if parent:
                os.makedirs(parent, exist_ok=True)
            if os.path.isdir(path):
                fail("IsDirectory", "Is a directory")
            with open(path, "wb") as f:
                shutil.copyfileobj(sys.stdin.buffer, f, 1 << 16)
        elif name == "ListFiles":
            if not os.path.isdir(path):
                os.lstat(path)
                fail("NotDirectory", "Not a directory")
            names = sorted(os.listdir(path))
            print(json.dumps([entry(os.path.join(path, n)) for n in names]))
        elif name == "Stat":
            print(json.dumps(entry(path)))
        elif name == "MakeDirectory":
            if args.get("parents"):
                os.makedirs(path, exist_ok=True)
            else:
                os.mkdir(path)
        elif name == "Remove":
            if os.path.isdir(path) and not os.path.islink(path):
                if args.get("recursive"):
                    shutil.rmtree(path)
                else:
                    os.rmdir(path)
            else:
                os.unlink(path)
        else:
            fail("Unsupported", f"{name} is not a command this helper knows")
    except OSError as exc:
        failed(exc)

main()
'''


def command_line(argv: list[str]) -> list[str]:
    """The argv to run for an exec's ``argv``: the helper in place of Modal's tool, anything else as it is."""
    if argv[:1] == [TOOL_PATH]:
        return ["python3", "-I", "-S", "-c", HELPER, *argv[1:]]
    return argv
