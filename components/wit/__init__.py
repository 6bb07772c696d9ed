"""The WIT packages ``worldrt:verse``, one folder per released version (``0.1.0/verse.wit``,
``0.2.0/verse.wit``), shipped inside the package so components can be built from an installed worldrt.

A released version's text never changes: what a later release adds goes into a new version's folder. The
host serves every version here at once; a component's imports pick one.
"""

from pathlib import Path

_HERE = Path(__file__).resolve().parent
WIT_VERSIONS: tuple[str, ...] = ("0.1.0", "0.2.0")
LATEST = WIT_VERSIONS[-1]


def wit_dir(version: str = LATEST) -> Path:
    """The folder holding the WIT package of ``version`` (a componentize-py ``-d`` / componentize-js ``--wit``)."""
    if version not in WIT_VERSIONS:
        raise ValueError(f"worldrt:verse@{version} is not a released version (released: {', '.join(WIT_VERSIONS)})")
    return _HERE / version


WIT_DIR = wit_dir(LATEST)

__all__ = ["LATEST", "WIT_DIR", "WIT_VERSIONS", "wit_dir"]
