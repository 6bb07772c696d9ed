"""The provider SDK: write a provider as a class of the seed trait's methods, serve it as a daemon."""

from worldrt.providers._canonical import canonical_json, digest, is_digest
from worldrt.providers._catalog import CATALOG, ProviderInfo, providers_for
from worldrt.providers._errors import (
    Aborted,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ProviderError,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
)
from worldrt.providers._links import Link, LinkTable
from worldrt.providers._metering import Meter, PriceTable
from worldrt.providers._provider import Call, Provider, ProviderOptions
from worldrt.providers._server import listen_address, serve

__all__ = [
    # writing a provider
    "Provider", "ProviderOptions", "Call", "PriceTable", "Meter", "Link", "LinkTable",
    # errors
    "ProviderError", "NotFound", "InvalidArgument", "FailedPrecondition", "DeadlineExceeded",
    "ResourceExhausted", "Unimplemented", "Unavailable", "Aborted",
    # running one
    "serve", "listen_address",
    # the design's providers
    "CATALOG", "ProviderInfo", "providers_for",
    # the contract's shared formats
    "canonical_json", "digest", "is_digest",
]
