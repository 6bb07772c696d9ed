"""ritual against its running daemon: attested inference, verification that catches tampering, its key."""

from __future__ import annotations

import hashlib
import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from tests.support import ROOT, module_daemon, sigterm_mid_call_leaves_nothing, status_of
from worldrt.errors import Unavailable
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

pytestmark = pytest.mark.daemons

CODE = """
import numpy as np

def infer(input, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(len(input))
    return {"score": float(np.dot(np.asarray(input, dtype=float), w)), "seed": seed}
"""
ATTACKER = Ed25519PrivateKey.generate()
ATTACKER_HEX = ATTACKER.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def normative_commitment(att: dict[str, Any]) -> str:
    """The issue's formula, written out here rather than imported."""
    body = {k: att[k] for k in ("model_hash", "input", "output", "seed")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def resign(att: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """What a forger does: recompute the commitment and sign it with a key of its own."""
    att = dict(att, commitment=normative_commitment(att))
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
    return dict(att, signature=key.sign(att["commitment"].encode()).hex(), public_key=public)


@pytest.fixture(scope="module")
def ritual(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderDaemon]:
    yield from module_daemon(tmp_path_factory, "ritual", trusted_keys=ATTACKER_HEX, reexecute_timeout_ms="1000")


def execute(daemon: ProviderDaemon, code: str = CODE, input_: Any = (1.0, 2.0, 3.0), seed: int = 5,
            **kw: Any) -> pb.ExecutionResult:
    return daemon.stub.Execute(pb.ExecuteRequest(code=code, input_json=json.dumps(list(input_) if isinstance(
        input_, tuple) else input_), seed=seed, **kw))


def verify(daemon: ProviderDaemon, att: dict[str, Any] | str, program: str = CODE, lazy: bool = False) -> pb.VerifyReply:
    text = att if isinstance(att, str) else json.dumps(att)
    return daemon.stub.Verify(pb.VerifyRequest(mode=pb.ATTESTATION, attestation_json=text, program_code=program,
                                               lazy=lazy))


def capabilities(daemon: ProviderDaemon) -> dict[str, Any]:
    caps = daemon.stub.Capabilities(pb.CapabilitiesRequest())
    assert (caps.provider_id, caps.trit) == ("ritual", -1)
    return {c.name: json.loads(c.value_json) for c in caps.capabilities}


def test_capabilities_say_attested_reexecution_and_nothing_more(ritual: ProviderDaemon) -> None:
    items = capabilities(ritual)
    assert items["proof"] == "attested re-execution"
    assert len(bytes.fromhex(items["public_key"])) == 32
    text = json.dumps(items).lower()
    for claim in ("zk", "zero-knowledge", "zero knowledge", "tee", "enclave", "sgx", "snark"):
        assert claim not in text.replace("committee", ""), claim
    with pytest.raises(grpc.RpcError) as info:
        ritual.stub.Start(pb.StartRequest())
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED and "morph" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        ritual.stub.Verify(pb.VerifyRequest(mode=pb.REFEREE))
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED and "gensyn" in info.value.details()


def test_execute_returns_a_signed_commitment_anyone_can_check(ritual: ProviderDaemon) -> None:
    result = execute(ritual)
    assert result.exit_code == 0 and not result.error
    att = json.loads(result.attestation_json)
    assert json.loads(result.value_json) == att["output"] and att["input"] == [1.0, 2.0, 3.0] and att["seed"] == 5
    assert att["commitment"] == normative_commitment(att)
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(att["public_key"]))
    public.verify(bytes.fromhex(att["signature"]), att["commitment"].encode())  # raises if it does not verify
    assert att["public_key"] == capabilities(ritual)["public_key"]
    again = execute(ritual)
    assert again.value_json == result.value_json  # deterministic inference


def test_eager_verify_reexecutes_and_accepts(ritual: ProviderDaemon) -> None:
    att = json.loads(execute(ritual).attestation_json)
    reply = verify(ritual, att)
    assert reply.verdict and reply.reexecuted_steps == 1
    assert json.loads(reply.proof)["reexecution"] == "match"


def test_registered_model_is_identified_by_its_weights_hash(ritual: ProviderDaemon) -> None:
    models = capabilities(ritual)["models"]
    result = ritual.stub.Execute(pb.ExecuteRequest(language="model", code="mlp-tiny", input_json="[0.5, -1, 2, 0]",
                                                   seed=11))
    att = json.loads(result.attestation_json)
    assert att["model"] == "mlp-tiny" and att["model_hash"] == models["mlp-tiny"]["model_hash"]
    output = json.loads(result.value_json)
    assert len(output["probs"]) == 3 and sum(output["probs"]) == pytest.approx(1.0)
    assert verify(ritual, att, program="").verdict


def test_a_registered_model_runs_only_in_its_sandbox(ritual: ProviderDaemon) -> None:
    """The daemon holds a model's weights and its program's source, never its runtime: numpy is loaded in the
    sandbox that runs the model, not in the daemon (whose start-up it would also slow)."""
    result = ritual.stub.Execute(pb.ExecuteRequest(language="model", code="mlp-tiny", input_json="[1, 2, 3, 4]",
                                                   seed=3))
    assert len(json.loads(result.value_json)["probs"]) == 3
    assert ritual.proc is not None
    maps = Path(f"/proc/{ritual.proc.pid}/maps").read_text()
    assert "numpy" not in maps, [line for line in maps.splitlines() if "numpy" in line][:3]


def _tamper(att: dict[str, Any], what: str) -> dict[str, Any]:
    if what == "output":
        return dict(att, output={**att["output"], "score": att["output"]["score"] + 1})
    if what == "input":
        return dict(att, input=[9.0, 9.0, 9.0])
    if what == "seed":
        return dict(att, seed=att["seed"] + 1)
    flipped = ("0" if att["signature"][0] != "0" else "1") + att["signature"][1:]
    return dict(att, signature=flipped)


@pytest.mark.parametrize("what, reason", [("output", "commitment"), ("input", "commitment"), ("seed", "commitment"),
                                          ("signature", "signature does not verify")])
def test_tampering_is_caught_with_a_reason(ritual: ProviderDaemon, what: str, reason: str) -> None:
    att = json.loads(execute(ritual).attestation_json)
    reply = verify(ritual, _tamper(att, what))
    proof = json.loads(reply.proof)
    assert not reply.verdict and reason in proof["reason"] and reply.reexecuted_steps == 0


def test_a_forger_with_its_own_key_is_not_trusted(ritual: ProviderDaemon) -> None:
    att = json.loads(execute(ritual).attestation_json)
    stranger = Ed25519PrivateKey.generate()
    reply = verify(ritual, resign(_tamper(att, "output"), stranger))
    assert not reply.verdict and "does not trust" in json.loads(reply.proof)["reason"]


def test_a_trusted_signer_that_lies_is_caught_by_reexecution(ritual: ProviderDaemon) -> None:
    att = json.loads(execute(ritual).attestation_json)
    lie = resign(_tamper(att, "output"), ATTACKER)  # a valid signature by a trusted key, on a wrong output
    reply = verify(ritual, lie)
    proof = json.loads(reply.proof)
    assert proof["checks"]["signature"] == "ok" and proof["checks"]["public_key"] == "ok"
    assert not reply.verdict and proof["reexecution"] == "mismatch" and reply.reexecuted_steps == 1


def test_code_that_is_not_the_attested_model_fails(ritual: ProviderDaemon) -> None:
    att = json.loads(execute(ritual).attestation_json)
    reply = verify(ritual, att, program=CODE + "\n# changed\n")
    assert not reply.verdict and "not the code that was attested" in json.loads(reply.proof)["reason"]


@pytest.mark.parametrize("signature", ["zz" * 64, "abc", ""])
def test_a_badly_encoded_signature_is_caught(ritual: ProviderDaemon, signature: str) -> None:
    att = json.loads(execute(ritual).attestation_json)
    reply = verify(ritual, dict(att, signature=signature))
    assert not reply.verdict and "not 64 bytes of hex" in json.loads(reply.proof)["reason"]


def test_lazy_verification_is_queued_then_fetched(ritual: ProviderDaemon) -> None:
    att = json.loads(execute(ritual, seed=77).attestation_json)
    first = verify(ritual, att, lazy=True)
    proof = json.loads(first.proof)
    assert proof["status"] == "pending" and not first.verdict and first.reexecuted_steps == 0
    deadline = time.monotonic() + 20
    while True:
        reply = verify(ritual, att, lazy=True)
        if json.loads(reply.proof)["status"] == "done":
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert reply.verdict and reply.reexecuted_steps == 1 and json.loads(reply.proof)["ticket"] == proof["ticket"]
    lie = resign(_tamper(att, "output"), ATTACKER)
    assert json.loads(verify(ritual, lie, lazy=True).proof)["status"] == "pending"
    while json.loads((reply := verify(ritual, lie, lazy=True)).proof)["status"] != "done":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not reply.verdict and json.loads(reply.proof)["reexecution"] == "mismatch"


# --- bad input --------------------------------------------------------------------------------
LOOP = "def infer(input, seed):\n    while True:\n        pass"
ESCAPES = [
    "import socket\ndef infer(input, seed):\n    return socket.create_connection(('1.1.1.1', 53), timeout=1) and 1",
    "def infer(input, seed):\n    return open('/etc/shadow').read()",
    f"def infer(input, seed):\n    return open({str(ROOT / 'pyproject.toml')!r}).read()",
]


@pytest.mark.parametrize("code", ESCAPES, ids=["network", "shadow", "host-files"])
def test_code_that_tries_to_escape_gets_an_error_result(ritual: ProviderDaemon, code: str) -> None:
    result = execute(ritual, code=code)
    assert result.exit_code == 1 and result.error and not result.attestation_json
    assert capabilities(ritual)["proof"] == "attested re-execution"


def test_code_that_loops_hits_its_timeout(ritual: ProviderDaemon) -> None:
    started = time.monotonic()
    assert status_of(lambda: execute(ritual, code=LOOP, timeout_ms=500)) == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 5
    att = json.loads(execute(ritual).attestation_json)
    looping = dict(att, model_hash=hashlib.sha256(json.dumps({"kind": "python", "source": LOOP}, sort_keys=True,
                   separators=(",", ":")).encode()).hexdigest())
    reply = verify(ritual, resign(looping, ATTACKER), program=LOOP)
    assert not reply.verdict and "did not finish" in json.loads(reply.proof)["reason"]


@pytest.mark.parametrize("request_, words", [
    (pb.ExecuteRequest(code=CODE, input_json="{nope"), "input_json"),
    (pb.ExecuteRequest(code=""), "empty"),
    (pb.ExecuteRequest(code="x", language="cobol"), "cobol"),
    (pb.ExecuteRequest(code="gpt-9", language="model"), "no registered model"),
    (pb.ExecuteRequest(code="mlp-tiny", language="model", input_json="[1, 2]"), "4 finite numbers"),
    (pb.ExecuteRequest(code=CODE, timeout_ms=10**9), "timeout_ms"),
])
def test_bad_execute_requests_are_invalid(ritual: ProviderDaemon, request_: pb.ExecuteRequest, words: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        ritual.stub.Execute(request_)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in info.value.details()
    assert capabilities(ritual)["proof"] == "attested re-execution"


@pytest.mark.parametrize("text, words", [
    ("not json", "not JSON"), ("[1]", "JSON object"), ("{}", "lacks"),
    (json.dumps({"commitment": 1, "signature": "", "public_key": "", "model_hash": "", "seed": 0, "input": 0,
                 "output": 0}), "commitment must be"),
    (json.dumps({"commitment": "", "signature": "", "public_key": "", "model_hash": "", "seed": -1, "input": 0,
                 "output": 0}), "seed"),
])
def test_malformed_attestations_are_invalid(ritual: ProviderDaemon, text: str, words: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        verify(ritual, text, program="")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in info.value.details()
    assert capabilities(ritual)["proof"] == "attested re-execution"


def test_python_attestation_without_its_code_is_invalid(ritual: ProviderDaemon) -> None:
    att = json.loads(execute(ritual).attestation_json)
    with pytest.raises(grpc.RpcError) as info:
        verify(ritual, att, program="")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "program_code" in info.value.details()


def test_key_is_made_once_kept_private_and_reused(tmp_path: Path) -> None:
    with ProviderDaemon("ritual", state_dir=tmp_path) as first:
        key_file = tmp_path / "ritual" / "ed25519.pem"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        public = capabilities(first)["public_key"]
        att = json.loads(execute(first).attestation_json)
    with ProviderDaemon("ritual", state_dir=tmp_path) as second:
        assert capabilities(second)["public_key"] == public
        assert verify(second, att).verdict  # an attestation survives a restart of its signer
    key_file.chmod(0o644)
    refused = ProviderDaemon("ritual", state_dir=tmp_path)
    with pytest.raises(Unavailable, match="exited with 2 before serving"):
        refused.start()
    assert "must be private" in (tmp_path / "ritual.log").read_text()


def test_sigterm_mid_execute_leaves_no_process(tmp_path: Path) -> None:
    daemon = ProviderDaemon("ritual", state_dir=tmp_path).start()
    sigterm_mid_call_leaves_nothing(
        daemon, tmp_path, lambda: execute(daemon, code="import time\ndef infer(i, s):\n    time.sleep(30)"),
        pb.ExecutionResult)
