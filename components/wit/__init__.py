"""The WIT world ``worldrt:verse@0.1.0`` (verse.wit beside this file), shipped inside the package so
components can be built from an installed worldrt."""

from pathlib import Path

WIT_DIR = Path(__file__).resolve().parent

__all__ = ["WIT_DIR"]
