"""The registry writer's JSON of a message is json_format's, for every message of the world's protos."""

from __future__ import annotations

import json
import math

import pytest
from google.protobuf.descriptor import Descriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp

from tests.support import sample_message
from worldrt.host.registry import message_json
from worldrt.v1 import host_pb, pb

pytestmark = pytest.mark.pure

_MESSAGES = [*pb.DESCRIPTOR.message_types_by_name.values(), *host_pb.DESCRIPTOR.message_types_by_name.values()]


@pytest.mark.parametrize("descriptor", _MESSAGES, ids=lambda d: d.name)
def test_a_message_s_json_is_json_format_s(descriptor: Descriptor) -> None:
    message = sample_message(descriptor)
    expected = MessageToDict(message, preserving_proto_field_name=True)
    assert bool(expected) == bool(descriptor.fields)  # every field is set: the comparison covers them all
    assert json.dumps(message_json(message)) == json.dumps(expected)
    empty = type(message)()
    assert message_json(empty) == MessageToDict(empty, preserving_proto_field_name=True) == {}


def test_doubles_that_json_cannot_hold_and_well_known_types_match_too() -> None:
    result = pb.ExecutionResult(duration_ms=math.inf, cpu_ms=-math.inf, cost_units=math.nan, exit_code=-3)
    assert message_json(result) == MessageToDict(result, preserving_proto_field_name=True) == {
        "exit_code": -3, "duration_ms": "Infinity", "cpu_ms": "-Infinity", "cost_units": "NaN"}
    instance = pb.Instance(instance_id="i-1", created_at=Timestamp(seconds=1_700_000_000, nanos=5_000_000))
    assert message_json(instance) == MessageToDict(instance, preserving_proto_field_name=True)
    assert message_json(instance)["created_at"] == "2023-11-14T22:13:20.005Z"
