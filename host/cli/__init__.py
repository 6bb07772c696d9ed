"""The ``worldrt`` command line. Every command that prints data takes ``--json``; errors are one line."""

from worldrt.host.cli._common import CliError
from worldrt.host.cli._main import main, parser, run

__all__ = ["CliError", "main", "parser", "run"]
