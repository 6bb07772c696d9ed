"""worldrt.Client's namespaces against real hosts: images built with progress and started from, links,
providers, components inspected, built and run with their calls and output, and verses with typed results."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import EXAMPLES, built_example
from worldrt.client import (
    BuildProgress,
    Client,
    ComponentOutput,
    Event,
    LogLine,
    PipelineRun,
    ProviderCall,
    Strategy,
)
from worldrt.errors import FailedPrecondition, InvalidArgument, NotFound
from worldrt.wit import LATEST

pytestmark = pytest.mark.daemons


def test_images_are_built_with_progress_started_from_and_removed(rt: Client) -> None:
    progress: list[BuildProgress] = []
    image = rt.images.build("greeting", files={"hello.txt": "hello from an image\n"}, on_progress=progress.append)
    assert "greeting" in image.names and image.files and progress and progress[-1].fraction == 1.0
    assert rt.images.inspect("greeting").digest == image.digest == rt.images.inspect(image.digest[:12]).digest
    assert {"default", "greeting"} <= {n for i in rt.images.list() for n in i.names}
    again = rt.images.build("greeting-again", files={"hello.txt": "hello from an image\n"})
    assert again.cached and again.digest == image.digest
    with rt.start(image="greeting") as inst:
        assert inst.image == image.digest
        assert inst.exec(argv=["cat", "/opt/python-env/files/hello.txt"]).stdout == "hello from an image\n"
    assert "greeting" not in rt.images.remove("greeting").names
    with pytest.raises(NotFound):
        rt.images.inspect("greeting")
    with pytest.raises(FailedPrecondition):
        rt.images.remove("default")
    with pytest.raises(InvalidArgument, match="morph or modal"):
        rt.images.list(provider="gensyn")
    with pytest.raises(InvalidArgument, match="list of packages"):
        rt.images.build("bad", pip="six")  # type: ignore[arg-type]


def test_links_are_put_listed_and_deleted_without_their_secrets(rt: Client) -> None:
    link = rt.links.put("generator", "morph", source="client-test", values={"memory_mb": "256"},
                        secrets={"key": "s3cret-value"})
    assert (link.link_id, link.provider, link.secret_keys) == ("client-test/generator/default", "morph", ("key",))
    listed = {x.link_id: x for x in rt.links.list()}
    assert listed[link.link_id].values == {"memory_mb": "256"} and listed[link.link_id].secret_keys == ("key",)
    assert "s3cret-value" not in repr(listed)
    assert rt.links.delete("generator", source="client-test") is True
    assert rt.links.delete("client-test/generator/default") is False


def test_providers_answer_with_their_state_and_capabilities(rt: Client) -> None:
    state = rt.providers.status("morph")
    assert state.status == "available" and "python" in state.languages and "list_instances" in state.operations
    assert state.capabilities["engine"] and state.trit == 1
    assert {"morph", "modal", "primeintellect", "gensyn", "ritual"} <= {p.provider_id for p in rt.providers.list()}
    with pytest.raises(InvalidArgument, match="unknown provider"):
        rt.providers.status("nobody")


def test_components_are_inspected_and_run_with_their_calls_logs_and_output(rt: Client) -> None:
    tiny = EXAMPLES / "tiny.wat"
    found = rt.components.inspect(tiny)
    assert found.problem is None and found.exports == {"run": found.exports["run"]}
    assert any(name.startswith("worldrt:verse/log") for name in found.imports)
    events: list[Event] = []
    outcome = rt.components.run(tiny, verse=7, args={"hello": "world"}, on_event=events.append)
    assert outcome.ok and outcome.value == {"hello": "world"} and outcome.component == "tiny"
    assert any(isinstance(e, LogLine) and "world" in e.text for e in events)
    with rt.start() as inst:
        stopped = rt.components.run(EXAMPLES / "stop.wat", verse=7, args=inst.id, links={"generator": "morph"})
        assert stopped.ok and stopped.text == inst.id and stopped.provider_calls == 1
        assert [(c.interface, c.operation, c.provider) for c in stopped.calls] == [("generator", "stop", "morph")]
        with pytest.raises(FailedPrecondition):
            inst.exec("1")
        failed = rt.components.run(EXAMPLES / "stop.wat", verse=7, args=inst.id)
        assert not failed.ok and "FAILED_PRECONDITION" in failed.text
    with pytest.raises(NotFound):
        rt.components.run(EXAMPLES / "no-such.wasm", verse=1)


@pytest.mark.timeout(900)  # componentize-py takes ~10 s alone, minutes on a loaded 2-core machine
def test_a_python_component_is_built_then_inspected_and_run(embedded: Client, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="not a released version"):
        embedded.components.build(EXAMPLES / "caller", tmp_path / "never.wasm", wit_version="9.9.9")
    built = embedded.components.build(EXAMPLES / "caller", tmp_path / "caller.wasm")
    assert built.path == tmp_path / "caller.wasm" and built.size_bytes > 1_000_000 and built.seconds > 0
    assert built.wit_version == LATEST
    inspected = embedded.components.inspect(built.path)
    assert inspected.problem is None and inspected.wit_versions == (LATEST,)
    events: list[Event] = []
    outcome = embedded.components.run(built.path, verse=3, args={"op": "execute", "instance_id": "new", "calls": 2,
                                                                 "code": "print('from the instance')"},
                                      on_event=events.append)
    assert outcome.ok and outcome.value == {"calls": 2}, outcome
    assert [c.operation for c in outcome.calls] == ["start", "execute", "execute", "stop"]
    assert all(isinstance(e, (ProviderCall, LogLine, ComponentOutput)) for e in events)


@pytest.mark.timeout(600)  # the explorer's first build, then two pipelines
def test_a_pipeline_gives_typed_results(rt: Client) -> None:
    built_example("explorer")
    calls: list[Event] = []
    run = rt.verse.pipeline(1069, preset="full", branches=3, on_event=calls.append)
    assert isinstance(run, PipelineRun) and run.verse_id == 1069 and run.preset == "full" and run.balanced
    assert run.providers[:2] == ("morph", "modal") and run.gf3_sum == 0 and len(run.candidates) == 3
    assert isinstance(run.winner, Strategy) and run.baseline is not None and run.wev is not None
    assert run.wev == pytest.approx(run.winner.value - run.baseline.value, abs=1e-6)
    assert run.winner.rule in {c.rule for c in run.candidates} and all(c.verified for c in run.candidates)
    assert run.attestation and run.attestation["verdict"] and run.run_id
    assert any(isinstance(e, ProviderCall) and e.provider == "gensyn" for e in calls)
    again = rt.verse.pipeline(1069, preset="full", branches=3)
    assert (again.wev, again.winner) == (run.wev, run.winner)


@pytest.mark.timeout(600)
def test_solo_runs_orchestration_and_selection_give_typed_results(remote: Client) -> None:
    built_example("explorer")
    solo = remote.verse.run(1069, on="gensyn")
    assert (solo.provider, solo.role, solo.trit) == ("gensyn", "verifier", -1) and solo.candidates
    assert all(c.verified for c in solo.candidates)
    orchestration = remote.verse.orchestrate(1069, "robust", branches=3)
    assert orchestration.invariant_held and orchestration.winner in orchestration.branch_values
    assert orchestration.observed == orchestration.winner and orchestration.wev is not None
    values = sorted(orchestration.branch_values.values())
    assert orchestration.branch_values[orchestration.winner] == values[len(values) // 2]
    selection = remote.verse.select("branch")
    assert selection.providers == ("morph", "gensyn") and selection.balanced
    assert selection.by_role == {r["role"]: r["provider"] for r in selection.raw["roles"]}
