"""world-runtime: capability providers for portable verse programs."""

__version__ = "0.1.0"
