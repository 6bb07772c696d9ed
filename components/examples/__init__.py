"""The example verse components, shipped with the package: ``EXAMPLES_DIR / "explorer"`` (Python, built with
componentize-py), ``caller`` and the small WAT components."""

from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parent

__all__ = ["EXAMPLES_DIR"]
