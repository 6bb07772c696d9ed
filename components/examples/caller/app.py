"""A verse that only calls providers, for tests and benchmarks of the host's routing.

``run(verse_id, args)`` with args JSON ``{"op": "execute", "instance_id": ..., "code": "1", "calls": N}``
runs ``code`` N times in that instance (``"new"``: one it starts and stops itself, ``""`` or none given: one-shot
runs), with the environment ``"env": {"K": "V"}`` when given;
``{"op": "optimize"}`` asks its coordinator for a tiny
optimization. It returns how many calls succeeded, or the first provider error as its err.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import coordinator, generator
from wit_world.imports.types import ExecuteRequest, InstanceRef, OptimizeRequest, StartRequest


def _call(fn, request):
    try:
        return fn(request)
    except Err as exc:
        raise Err(f"{exc.value.code}: {exc.value.message}") from None


class WitWorld(wit_world.WitWorld):
    def run(self, verse_id: int, args: str) -> str:
        spec = json.loads(args or "{}")
        op = spec.get("op", "execute")
        done = 0
        if op == "optimize":
            reply = _call(coordinator.optimize, OptimizeRequest(
                objective_code="def objective(params, seed):\n    return -abs(params['x'] - 2)\n",
                space_json=json.dumps({"x": [0, 1, 2, 3]}), budget=16, seed=verse_id, group_size=4,
                max_async_level=0, checkpoint_every=0))
            return json.dumps({"calls": 1, "best": json.loads(reply.best_json)})
        instance_id = spec.get("instance_id", "")
        if instance_id == "new":
            instance_id = _call(generator.start, StartRequest(image="", snapshot_id="", language="python", ttl_s=0,
                                                              limits=None, metadata=[])).instance_id
        request = ExecuteRequest(instance_id=instance_id, code=spec.get("code", "1"), language="python",
                                 timeout_ms=int(spec.get("timeout_ms", 10_000)), env=sorted(spec.get("env", {}).items()),
                                 input_json="", seed=0, argv=[], cwd="", stdin=b"", output_bytes=False)
        try:
            for _ in range(int(spec.get("calls", 1))):
                _call(generator.execute, request)
                done += 1
        finally:
            if spec.get("instance_id") == "new":
                _call(generator.stop, InstanceRef(instance_id=instance_id))
        return json.dumps({"calls": done})
