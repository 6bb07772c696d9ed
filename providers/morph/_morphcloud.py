"""morph's ``morphcloud`` backend: the contract served by Morph Cloud's REST API instead of the local
engine (``worldrt provider serve morph --backend morphcloud``).

Start makes (or, by digest, reuses) a snapshot of the image and boots an instance of it; Execute runs a
command per call (shell, or ``python3 -c``: no interpreter state between calls, no ``value_json``);
Snapshot and Branch are Morph's; Merge deletes the losers; Stop deletes an instance or a snapshot. What
this backend starts it deletes when it shuts down. ``ttl_s`` becomes Morph's TTL, which is absolute.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from worldrt import errors as err
from worldrt.providers import Call, PriceTable, Provider, ProviderOptions
from worldrt.providers.morph._morphcloud_rest import DEFAULT_BASE_URL, MorphRest
from worldrt.v1 import pb

DEFAULT_IMAGE = "morphvm-minimal"
DEFAULT_TIMEOUT_MS = 300_000
_LANGUAGES = ("shell", "python")


def _timestamp(seconds: Any) -> Timestamp:
    ts = Timestamp()
    ts.FromSeconds(int(seconds or time.time()))
    return ts


def command_for(request: pb.ExecuteRequest) -> list[str]:
    """The argv Morph runs for a request: ``sh -c CODE`` or ``python3 -c CODE``, after ``env K=V`` if any."""
    language = request.language or "python"
    if language not in _LANGUAGES:
        raise err.InvalidArgument(f"the morphcloud backend runs {' and '.join(_LANGUAGES)}, not {language!r}")
    for key in request.env:
        if not key or "=" in key or "\0" in key:
            raise err.InvalidArgument(f"env name {key!r} is not valid")
    argv = ["sh", "-c", request.code] if language == "shell" else ["python3", "-c", request.code]
    return ["env", *(f"{k}={v}" for k, v in sorted(request.env.items())), *argv] if request.env else argv


class MorphCloudProvider(Provider):
    provider_id = "morph"
    prices = PriceTable(base={"start": 0.01, "snapshot": 0.005, "branch": 0.005, "execute": 0.001, "merge": 0.001},
                        per_wall_ms=0.00001)

    def __init__(self, options: ProviderOptions) -> None:
        super().__init__(options)
        v = options.values
        self.base_url = (v.get("base_url") or os.environ.get("MORPH_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self._api_key = v.get("api_key") or os.environ.get("MORPH_API_KEY", "")
        self.max_branches = int(v.get("max_branches", 256))
        self.vcpus = int(v.get("vcpus", 1))
        self.rest: MorphRest | None = None
        # What this daemon made, so that Shutdown deletes it.
        self.instances: set[str] = set()
        self.snapshots: set[str] = set()

    async def open(self) -> None:
        if not self._api_key:
            raise err.InvalidArgument("the morphcloud backend needs a Morph API key: --api-key KEY or MORPH_API_KEY")
        self.rest = MorphRest(self.base_url, self._api_key)

    @property
    def api(self) -> MorphRest:
        if self.rest is None:
            raise err.Unavailable("the morphcloud backend is not open yet")
        return self.rest

    async def close(self) -> int:
        stopped = 0
        for iid in list(self.instances):
            stopped += await self._delete("instance", iid)
        for sid in list(self.snapshots):
            stopped += await self._delete("snapshot", sid)
        if self.rest is not None:
            await self.rest.close()
        return stopped

    async def _delete(self, kind: str, member_id: str) -> int:
        (self.instances if kind == "instance" else self.snapshots).discard(member_id)
        try:
            await self.api.call("DELETE", f"/{kind}/{member_id}")
        except err.WorldError:
            return 0
        return 1

    def capability_items(self) -> dict[str, object]:
        return {
            "backend": "morphcloud",
            "base_url": self.base_url,
            "engine": f"Morph Cloud's REST API at {self.base_url} (the morphcloud backend of worldrt's morph provider)",
            "snapshot_kind": "MEMORY_AND_DISK",
            "branch": True, "max_branch_count": self.max_branches,
            "python": "each Execute runs `python3 -c CODE` on the instance: no interpreter state between calls "
                      "and no value_json (the local engine keeps both)",
            "ttl": "ttl_s is Morph's TTL: absolute from Start, not reset by use",
            "execute_timeout": "timeout_ms bounds the wait for the answer; Morph is not told, so the command may "
                               "keep running there",
        }

    def languages(self) -> list[str]:
        return list(_LANGUAGES)

    def _instance_pb(self, item: dict[str, Any], status: pb.InstanceStatus = pb.RUNNING) -> pb.Instance:
        refs = item.get("refs") or {}
        spec = item.get("spec") or {}
        return pb.Instance(instance_id=item["id"], provider_id=self.provider_id, snapshot_id=refs.get("snapshot_id", ""),
                           status=status, created_at=_timestamp(item.get("created")),
                           limits=pb.Limits(memory_mb=int(spec.get("memory") or 0), disk_mb=int(spec.get("disk_size") or 0)),
                           metadata={str(k): str(v) for k, v in (item.get("metadata") or {}).items()})

    async def _boot(self, snapshot_id: str, ttl_s: int, metadata: dict[str, str]) -> dict[str, Any]:
        item = await self.api.call("POST", "/instance", params={"snapshot_id": snapshot_id},
                                   json={"metadata": metadata or None, "ttl_seconds": ttl_s or None,
                                         "ttl_action": "stop" if ttl_s else None})
        self.instances.add(item["id"])
        try:
            return await self.api.ready("instance", item)
        except err.WorldError:
            await self._delete("instance", item["id"])
            raise

    async def start(self, request: pb.StartRequest, call: Call) -> pb.Instance:
        if request.ttl_s < 0:
            raise err.InvalidArgument("ttl_s must not be negative")
        if request.language and request.language not in _LANGUAGES:
            raise err.InvalidArgument(f"the morphcloud backend runs {' and '.join(_LANGUAGES)}, not {request.language!r}")
        if request.snapshot_id:
            return self._instance_pb(await self._boot(request.snapshot_id, request.ttl_s, dict(request.metadata)))
        limits = request.limits
        for name in ("memory_mb", "cpu_s", "processes", "file_size_mb", "disk_mb"):
            if getattr(limits, name) < 0:
                raise err.InvalidArgument(f"limits.{name} must not be negative, got {getattr(limits, name)}")
        spec = {"image_id": request.image or DEFAULT_IMAGE, "vcpus": self.vcpus}
        if limits.memory_mb:
            spec["memory"] = limits.memory_mb
        if limits.disk_mb:
            spec["disk_size"] = limits.disk_mb
        digest = "worldrt-" + hashlib.sha256(repr(sorted(spec.items())).encode()).hexdigest()[:32]
        snapshot = await self.api.ready("snapshot", await self.api.call("POST", "/snapshot", json={**spec, "digest": digest}))
        return self._instance_pb(await self._boot(snapshot["id"], request.ttl_s, dict(request.metadata)))

    async def stop(self, request: pb.InstanceRef, call: Call) -> pb.Instance:
        """Delete an instance; given a snapshot id, delete that snapshot."""
        member = request.instance_id
        if not member:
            raise err.InvalidArgument("instance_id is required")
        try:
            item = await self.api.call("GET", f"/instance/{member}")
        except err.NotFound:
            snapshot = await self.api.call("GET", f"/snapshot/{member}")
            await self.api.call("DELETE", f"/snapshot/{member}")
            self.snapshots.discard(member)
            return pb.Instance(instance_id=member, provider_id=self.provider_id, snapshot_id=member, status=pb.STOPPED,
                               created_at=_timestamp(snapshot.get("created")))
        await self.api.call("DELETE", f"/instance/{member}")
        self.instances.discard(member)
        return self._instance_pb(item, pb.STOPPED)

    def _timeout_s(self, request: pb.ExecuteRequest) -> float:
        if request.timeout_ms < 0:
            raise err.InvalidArgument("timeout_ms must not be negative")
        return (request.timeout_ms or DEFAULT_TIMEOUT_MS) / 1000

    async def execute(self, request: pb.ExecuteRequest, call: Call) -> pb.ExecutionResult:
        command, timeout_s = command_for(request), self._timeout_s(request)
        started = time.perf_counter()
        answer = await self.api.call("POST", f"/instance/{request.instance_id}/exec", json={"command": command},
                                     timeout_s=timeout_s)
        return pb.ExecutionResult(instance_id=request.instance_id, stdout=str(answer.get("stdout", "")),
                                  stderr=str(answer.get("stderr", "")), exit_code=int(answer.get("exit_code", 0)),
                                  duration_ms=(time.perf_counter() - started) * 1000)

    async def execute_stream(self, request: pb.ExecuteRequest, call: Call) -> AsyncIterator[pb.ExecutionEvent]:
        command, timeout_s = command_for(request), self._timeout_s(request)
        started = time.perf_counter()
        exit_code = 0
        async for event in self.api.exec_events(request.instance_id, command, timeout_s):
            kind, content = event.get("type"), event.get("content", "")
            if kind == "stdout":
                yield pb.ExecutionEvent(stdout=str(content))
            elif kind == "stderr":
                yield pb.ExecutionEvent(stderr=str(content))
            elif kind == "exit_code":
                exit_code = int(content)
        yield pb.ExecutionEvent(result=pb.ExecutionResult(instance_id=request.instance_id, exit_code=exit_code,
                                                          duration_ms=(time.perf_counter() - started) * 1000))

    async def snapshot(self, request: pb.SnapshotRequest, call: Call) -> pb.SnapshotRef:
        if request.ttl_s < 0:
            raise err.InvalidArgument("ttl_s must not be negative")
        body = {"ttl_seconds": request.ttl_s} if request.ttl_s else {}
        item = await self.api.ready("snapshot", await self.api.call(
            "POST", f"/instance/{request.instance_id}/snapshot", json=body))
        self.snapshots.add(item["id"])
        return pb.SnapshotRef(snapshot_id=item["id"], instance_id=request.instance_id, kind=pb.MEMORY_AND_DISK,
                              size_bytes=0, created_at=_timestamp(item.get("created")))

    async def branch(self, request: pb.BranchRequest, call: Call) -> pb.BranchReply:
        if request.count <= 0:
            raise err.InvalidArgument("count must be at least 1")
        if request.count > self.max_branches:
            raise err.InvalidArgument(f"count {request.count} is above this daemon's maximum of "
                                      f"{self.max_branches} branches")
        if request.ttl_s < 0:
            raise err.InvalidArgument("ttl_s must not be negative")
        await self.api.ready("snapshot", await self.api.call("GET", f"/snapshot/{request.snapshot_id}"))
        made = await asyncio.gather(*(self._boot(request.snapshot_id, request.ttl_s, {}) for _ in range(request.count)),
                                    return_exceptions=True)
        reply = pb.BranchReply(snapshot_id=request.snapshot_id)
        for index, item in enumerate(made):
            if isinstance(item, BaseException):
                code = item.code.name if isinstance(item, err.WorldError) else "INTERNAL"
                reply.errors.append(pb.BranchError(index=index, code=code, message=str(item)))
            else:
                reply.instances.append(self._instance_pb(item))
        return reply

    async def merge(self, request: pb.MergeRequest, call: Call) -> pb.Instance:
        ids, oracle = list(request.instance_ids), request.oracle
        if not ids:
            raise err.InvalidArgument("instance_ids is empty: name the instances to merge")
        if len(set(ids)) != len(ids):
            raise err.InvalidArgument("instance_ids names an instance more than once")
        items = {iid: await self.api.call("GET", f"/instance/{iid}") for iid in ids}
        if oracle.winner_id:
            if oracle.winner_id not in ids:
                raise err.InvalidArgument(f"oracle winner {oracle.winner_id} is not one of the merged instances")
            winner = oracle.winner_id
        else:
            if oracle.rule not in ("max", "min"):
                raise err.InvalidArgument(f"oracle rule must be 'max' or 'min' (or set winner_id), got {oracle.rule!r}")
            missing = [iid for iid in ids if iid not in oracle.scores]
            if missing:
                raise err.InvalidArgument(f"oracle has no score for {', '.join(missing)}")
            if any(math.isnan(oracle.scores[iid]) for iid in ids):
                raise err.InvalidArgument("oracle scores must not be NaN")
            pick: Callable[..., str] = max if oracle.rule == "max" else min
            winner = pick(ids, key=lambda iid: oracle.scores[iid])
        for iid in ids:
            if iid != winner:
                await self.api.call("DELETE", f"/instance/{iid}")
                self.instances.discard(iid)
        return self._instance_pb(items[winner])

