"""The ``argparse`` pieces the commands share: the one ``error:`` line of a refused command line
(``refuse``), parsers, number types naming the bad value. Nothing heavy: ``--help`` is instant."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from collections.abc import Callable
from typing import Any, NoReturn


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


def _bounded(
    convert: Callable[[str], Any], ok: Callable[[Any], bool], rule: str, name: str
) -> Callable[[str], Any]:
    """An ``argparse`` type: ``convert`` the text, refuse a value that is not ``ok``."""

    def parse(text: str) -> Any:
        value = convert(text)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{text} is not {rule}")
        return value

    parse.__name__ = name  # argparse names it in "invalid NAME value"
    return parse


positive_int = _bounded(int, lambda v: v >= 1, "a positive integer", "positive_int")
non_negative_int = _bounded(int, lambda v: v >= 0, "an integer of 0 or more", "non_negative_int")
positive_seconds = _bounded(
    float, lambda v: 0 < v < float("inf"), "a positive number of seconds", "positive_seconds"
)
unit_interval = _bounded(float, lambda v: 0 <= v <= 1, "a number from 0 to 1", "unit_interval")


def fit_job_parser(command: str, description: str) -> OneLineArgumentParser:
    """The parser of a command that runs fits (``cv``, ``tune``): its own flags, the rest fit's;
    no abbreviations: a flag that is not the command's own is a fit flag, never a prefix of one."""
    parser = command_parser(command, description)
    parser.allow_abbrev = False
    return parser
