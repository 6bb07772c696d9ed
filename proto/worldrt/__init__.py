"""world-runtime: capability providers for portable verse programs.

The lowest layer: ``worldrt.v1`` (the generated contract), ``worldrt.errors`` (the one error root and its
kinds) and ``worldrt.descriptors``; the provider SDK is ``worldrt.providers``, the host ``worldrt.host``."""

__version__ = "0.1.0"

__all__ = ["__version__"]
