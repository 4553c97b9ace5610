"""The `tzn` command: one entry point; each package registers its own subcommands.

This module is the only place that wires the packages together (training's `tzn predict` runs exported
heads through the service's runners without training importing the service).
"""

from __future__ import annotations

import argparse
import sys

from export import commands as export_commands
from model.head import Head
from service import commands as service_commands
from training import commands as training_commands


def load_exported_head(*args, **kwargs) -> Head:
    """`service.runners.load_head`, imported when a command asks for an exported head."""
    from service.runners import load_head

    return load_head(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tzn", description="Temporal Zoom Network: temporal action localization")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    training_commands.register(subcommands, load_exported_head)
    export_commands.register(subcommands)
    service_commands.register(subcommands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args) or 0


if __name__ == "__main__":
    sys.exit(main())
