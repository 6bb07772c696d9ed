"""The first program of an image build's sandbox: pip's way to the daemon's index proxy.

The build sandbox has a network namespace of its own, loopback only, so nothing in it reaches a
service of the machine. pip talks to an HTTP proxy over TCP; the daemon's proxy (``_index_proxy``)
listens on a unix socket bound into the sandbox. This script, run by bubblewrap as root inside,
listens on the sandbox's own ``127.0.0.1:PORT`` before anything else runs, forks a relay that drops
to the build's uid at once and copies each TCP connection to that unix socket and back, and execs the
build script in its own place. The relay dies with the sandbox (its pid namespace ends when the build
script exits). Only the standard library: it runs with the base interpreter (``-I -S``).

    python -I -S forwarder.py SOCKET PORT UID -- BUILD ARGV...
"""

from __future__ import annotations

import os
import socket
import sys
import threading

MAX_CONNECTIONS = 64
CHUNK = 1 << 16


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(CHUNK):
            sink.sendall(data)
    except OSError:
        pass
    for sock, how in ((sink, socket.SHUT_WR), (source, socket.SHUT_RD)):
        try:
            sock.shutdown(how)
        except OSError:
            pass


def _relay(client: socket.socket, path: str, slots: threading.BoundedSemaphore) -> None:
    try:
        with client, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as upstream:
            try:
                upstream.connect(path)
            except OSError:
                return
            back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
            back.start()
            _pump(client, upstream)
            back.join()
    finally:
        slots.release()


def _serve(listener: socket.socket, path: str, uid: int) -> None:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
    while True:
        client, _ = listener.accept()
        if not slots.acquire(blocking=False):
            client.close()
            continue
        threading.Thread(target=_relay, args=(client, path, slots), daemon=True).start()


def main(argv: list[str]) -> None:
    path, port, uid, separator, *command = argv
    if separator != "--" or not command:
        raise SystemExit("usage: forwarder.py SOCKET PORT UID -- BUILD ARGV...")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(port)))
    listener.listen(MAX_CONNECTIONS)
    if os.fork() == 0:
        try:
            _serve(listener, path, int(uid))
        finally:
            os._exit(0)
    listener.close()
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
