"""What Modal's API shows that worldrt keeps no record of: apps, named secrets and sandboxes (their ids,
names, tags, deadlines and results), each made by this server and held in memory for its lifetime, each
bounded:

- apps: at most ``MAX_APPS``; past it the least recently used app with no running sandbox is forgotten
  (looked up again, it gets a new id);
- named secrets: at most ``MAX_SECRETS``, each at most ``MAX_SECRET_BYTES`` of names and values; past the
  count the least recently used is forgotten (a sandbox already made keeps its values; a later use of the
  name answers NOT_FOUND);
- finished sandboxes: at most ``MAX_FINISHED``, the oldest forgotten first (running ones are bounded by the
  host's limits);
- names (of apps and secrets) are at most ``MAX_NAME`` characters.

A sandbox is a worldrt instance of the modal provider; its ids never have the shape of a V1 sandbox id
(``sb-`` and 22 base62 characters), so the SDK addresses it with the V2 calls, and its task id ends in
``V``, which the SDK reads as a V2 task. Records are safe to use from the server's worker threads.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from modal_proto import api_pb2

from worldrt.errors import AlreadyExists, InvalidArgument, NotFound

# Finished sandboxes remembered (for from_id, wait and list); the oldest are forgotten past this.
MAX_FINISHED = 1000
MAX_APPS = 1000
MAX_SECRETS = 1000
MAX_SECRET_BYTES = 64 * 1024
MAX_NAME = 256


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


@dataclass
class SandboxRecord:
    id: str
    task_id: str
    instance_id: str
    app_id: str
    image_id: str
    name: str
    timeout_s: int
    idle_timeout_s: int
    env: dict[str, str]
    workdir: str
    tags: dict[str, str] = field(default_factory=dict)
    # The process id of its entrypoint, when it was given one.
    entrypoint: str | None = None
    created: float = field(default_factory=time.time)
    deadline: float = 0.0  # monotonic
    last_active: float = field(default_factory=time.monotonic)
    result: api_pb2.GenericResult | None = None
    finished_at: float = 0.0
    # Its instance was stopped (by this server): nothing is asked of it again.
    stopped: bool = False
    ended: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.timeout_s

    def finish(self, result: api_pb2.GenericResult) -> bool:
        """Set its result once; whether this call set it."""
        if self.result is not None:
            return False
        self.result = result
        self.finished_at = time.time()
        self.ended.set()
        return True

    def touch(self) -> None:
        self.last_active = time.monotonic()


def _named(kind: str, name: str) -> str:
    if len(name) > MAX_NAME:
        raise InvalidArgument(f"{kind} names are at most {MAX_NAME} characters here, this one has {len(name)}")
    return name


class Records:
    def __init__(self, max_apps: int = MAX_APPS, max_secrets: int = MAX_SECRETS) -> None:
        self._lock = threading.Lock()
        self.max_apps, self.max_secrets = max_apps, max_secrets
        self.apps: OrderedDict[str, str] = OrderedDict()  # name -> id, least recently used first
        self.secrets: OrderedDict[str, tuple[str, dict[str, str]]] = OrderedDict()  # name -> (id, env), LRU first
        self.sandboxes: dict[str, SandboxRecord] = {}
        self._by_task: dict[str, str] = {}

    def app(self, name: str, create: bool) -> str:
        with self._lock:
            if name not in self.apps:
                if not create:
                    raise NotFound(f"App '{name}' not found: look it up with create_if_missing=True to make it")
                self.apps[_named("App", name)] = new_id("ap")
                self._forget_apps()
            self.apps.move_to_end(name)
            return self.apps[name]

    def _forget_apps(self) -> None:
        over = len(self.apps) - self.max_apps
        if over <= 0:
            return
        busy = {s.app_id for s in self.sandboxes.values() if s.result is None}
        for name in [n for n, app_id in self.apps.items() if app_id not in busy][:over]:
            del self.apps[name]

    def app_name(self, app_id: str) -> str | None:
        with self._lock:
            return next((name for name, known in self.apps.items() if known == app_id), None)

    def put_secret(self, name: str, env: dict[str, str], overwrite: bool) -> str:
        size = sum(len(k.encode()) + len(v.encode()) for k, v in env.items())
        if size > MAX_SECRET_BYTES:
            raise InvalidArgument(f"a secret holds at most {MAX_SECRET_BYTES} bytes of names and values here, "
                                  f"'{name[:MAX_NAME]}' has {size}")
        with self._lock:
            if name in self.secrets and not overwrite:
                raise AlreadyExists(f"Secret '{name}' already exists")
            secret_id = self.secrets[name][0] if name in self.secrets else new_id("st")
            self.secrets[_named("Secret", name)] = (secret_id, dict(env))
            self.secrets.move_to_end(name)
            while len(self.secrets) > self.max_secrets:
                self.secrets.popitem(last=False)
            return secret_id

    def secret(self, name: str) -> str:
        with self._lock:
            if name not in self.secrets:
                raise NotFound(f"Secret '{name}' not found on this server: make it with modal.Secret.objects.create"
                               f"(...) first, or pass the values with modal.Secret.from_dict(...)")
            self.secrets.move_to_end(name)
            return self.secrets[name][0]

    def secret_env(self, secret_id: str) -> dict[str, str]:
        with self._lock:
            for name, (known, env) in self.secrets.items():
                if known == secret_id:
                    self.secrets.move_to_end(name)
                    return dict(env)
        raise NotFound(f"Secret {secret_id} not found on this server (secrets past the {self.max_secrets} this server "
                       f"keeps are forgotten, the least recently used first): make it again")

    def add(self, record: SandboxRecord) -> SandboxRecord:
        with self._lock:
            if record.name and any(s.name == record.name and s.app_id == record.app_id and s.result is None
                                   for s in self.sandboxes.values()):
                raise AlreadyExists(f"a running Sandbox named '{record.name}' exists in this App already")
            self.sandboxes[record.id] = record
            self._by_task[record.task_id] = record.id
            self._forget_oldest_finished()
        return record

    def _forget_oldest_finished(self) -> None:
        finished = [s for s in self.sandboxes.values() if s.result is not None]
        for old in sorted(finished, key=lambda s: s.finished_at)[:max(0, len(finished) - MAX_FINISHED)]:
            del self.sandboxes[old.id]
            self._by_task.pop(old.task_id, None)

    def forget(self, record: SandboxRecord) -> None:
        with self._lock:
            self.sandboxes.pop(record.id, None)
            self._by_task.pop(record.task_id, None)

    def get(self, sandbox_id: str) -> SandboxRecord:
        with self._lock:
            record = self.sandboxes.get(sandbox_id)
        if record is None:
            raise NotFound(f"Sandbox {sandbox_id} not found")
        return record

    def by_task(self, task_id: str) -> SandboxRecord:
        with self._lock:
            sandbox_id = self._by_task.get(task_id)
        if sandbox_id is None:
            raise NotFound(f"task {task_id} not found")
        return self.get(sandbox_id)

    def by_name(self, app_id: str, name: str, include_finished: bool) -> SandboxRecord:
        with self._lock:
            found = [s for s in self.sandboxes.values() if s.app_id == app_id and s.name == name
                     and (include_finished or s.result is None)]
        if not found:
            raise NotFound(f"Sandbox with name '{name}' not found")
        return max(found, key=lambda s: s.created)

    def all(self) -> list[SandboxRecord]:
        with self._lock:
            return list(self.sandboxes.values())
