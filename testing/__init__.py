"""worldrt for your own test suites: a runtime in a temporary folder that stops everything it started.

    from worldrt.testing import Runtime

    def test_my_code() -> None:
        with Runtime.start_local() as rt:            # or start_local(server=True): a real `worldrt host serve`
            with rt.client.start("morph") as inst:
                assert inst.exec("1 + 1").value == 2

``AsyncRuntime`` is the same for asyncio (``rt.client`` is an ``AsyncClient``).
"""

from worldrt.testing._runtime import AsyncRuntime, Runtime

__all__ = ["Runtime", "AsyncRuntime"]
