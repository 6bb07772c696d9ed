"""The provider SDK: write a provider as a class of the seed trait's methods, serve it as a daemon."""

from ._canonical import canonical_json, digest, is_digest
from ._catalog import CATALOG, ProviderInfo, providers_for
from ._errors import (
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
from ._links import Link, LinkTable
from ._metering import Meter, PriceTable
from ._provider import Call, Provider, ProviderOptions
from ._server import listen_address, serve

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
