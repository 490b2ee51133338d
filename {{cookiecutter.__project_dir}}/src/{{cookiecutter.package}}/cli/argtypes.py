"""The ``argparse`` pieces shared by the commands: the one ``error:`` line of a refused command
line (``refuse``, LightningCLI's parser too), parsers, and number types that name the bad value.
This module imports nothing heavy, so a command's ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn


def refuse(prog: str, message: str) -> NoReturn:
    """Print a parser's refusal as one ``error:`` line pointing at ``--help``; exit with 2."""
    print(f"error: {message} (see: {prog.replace(' [options]', '')} --help)", file=sys.stderr)
    sys.exit(2)


class OneLineArgumentParser(argparse.ArgumentParser):
    """``argparse`` parser whose refusals are one ``error:`` line naming the option."""

    def error(self, message: str) -> NoReturn:
        refuse(self.prog, message)


def program_name() -> str:
    """The name the command was run as (the package's name under ``python -m`` or none)."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return __name__.split(".")[0] if name in ("", "__main__.py", "-c") else name


def command_parser(command: str, description: str) -> OneLineArgumentParser:
    """The parser of the subcommand ``command``, its usage line named after the program."""
    return OneLineArgumentParser(prog=f"{program_name()} {command}", description=description)


def positive_int(text: str) -> int:
    """An ``argparse`` type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def non_negative_int(text: str) -> int:
    """An ``argparse`` type: an integer of at least 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def positive_seconds(text: str) -> float:
    """An ``argparse`` type: a finite number of seconds above 0."""
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def unit_interval(text: str) -> float:
    """An ``argparse`` type: a number from 0 to 1 (a probability, a decision threshold)."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a number from 0 to 1")
    return value


def fit_job_parser(command: str, description: str) -> OneLineArgumentParser:
    """The parser of a command that runs fits (``cv``, ``tune``): its own flags, the rest fit's.

    No abbreviations: a flag that is not the command's own is a fit flag, never a prefix of one.
    """
    parser = command_parser(command, description)
    parser.allow_abbrev = False
    return parser
