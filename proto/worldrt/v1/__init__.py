"""The ``worldrt.v1`` contract: generated protobuf messages and gRPC stubs (see world_runtime.proto)."""

from worldrt.v1 import host_pb2 as host_pb
from worldrt.v1 import host_pb2_grpc as host_rpc
from worldrt.v1 import world_runtime_pb2 as pb
from worldrt.v1 import world_runtime_pb2_grpc as rpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["WorldRuntime"].full_name
HOST_SERVICE_NAME = host_pb.DESCRIPTOR.services_by_name["Host"].full_name

__all__ = ["pb", "rpc", "host_pb", "host_rpc", "SERVICE_NAME", "HOST_SERVICE_NAME"]
