"""`tzn` subcommands of the service package."""

from __future__ import annotations

import argparse


def register(subcommands: argparse._SubParsersAction) -> None:
    """Adds this package's subcommands; each sets `handler` to a function(args) -> exit code."""
