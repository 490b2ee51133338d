"""The ``{{ cookiecutter.package }}`` command.

``{{ cookiecutter.package }} fit|validate|test|predict --config configs/baseline.yaml ...`` is a
LightningCLI (every model, data and trainer argument is a flag; ``--print_config`` shows them);
``{{ cookiecutter.package }} sample-data DIR`` writes the synthetic sample set. Bad input ends with one
``error:`` line on stderr and exit code 2, before anything is written.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from . import sample_data
from .errors import DataError, UserError

COMMANDS = {
    "fit": "train a model (checkpoints/, logs/); --config configs/cpu_debug.yaml to try it",
    "validate": "score a checkpoint on the validation fold (--ckpt_path FILE|last|best)",
    "test": "the same on the held-out fold (today: the validation fold again)",
    "predict": "write submission.csv for test_images/ (--ckpt_path FILE|last|best)",
    "prepare": "pre-resize the images once into a cache folder for fast epochs",
    "sample-data": "write the synthetic sample set (Kaggle layout) into a new folder",
}


class OneLineArgumentParser(argparse.ArgumentParser):
    """``argparse`` parser whose refusals are one ``error:`` line naming the option."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see: {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


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


def overview() -> str:
    """The top-level help: every subcommand, one line each."""
    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "{{ cookiecutter.package }}"
    choices = "{" + ",".join(COMMANDS) + "}"
    lines = [f"usage: {prog} {choices} [options]", "", "commands:"]
    lines += [f"  {name:<12} {what}" for name, what in COMMANDS.items()]
    lines += ["", f"'{prog} COMMAND --help' lists the options of a command."]
    return "\n".join(lines)


def sample_data_command(argv: Sequence[str]) -> int:
    """``sample-data DIR``: write the synthetic Kaggle-layout sample set into a new folder."""
    parser = OneLineArgumentParser(
        prog=f"{Path(sys.argv[0]).name} sample-data",
        description="Write a deterministic synthetic sample of the competition data.",
    )
    parser.add_argument("out_dir", type=Path, help="folder to create (must not exist or be empty)")
    parser.add_argument(
        "--n-train", type=positive_int, default=160, help="training images (default 160)"
    )
    parser.add_argument(
        "--n-test", type=non_negative_int, default=12, help="test images (default 12)"
    )
    parser.add_argument("--width", type=positive_int, default=128, help="image width (default 128)")
    parser.add_argument("--height", type=positive_int, default=96, help="image height (default 96)")
    parser.add_argument(
        "--seed", type=non_negative_int, default=2021, help="random seed (default 2021)"
    )
    args = parser.parse_args(argv)
    out_dir: Path = args.out_dir
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DataError(f"{out_dir}: already exists and is not an empty folder")
    if min(args.n_train, args.width, args.height) < 1 or args.n_test < 0:
        raise DataError("--n-train, --width and --height must be positive, --n-test >= 0")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        sample_data.generate(
            staging, args.n_train, args.n_test, (args.width, args.height), args.seed
        )
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"wrote {args.n_train} training and {args.n_test} test images to {out_dir}")
    return 0


def prepare_command(argv: Sequence[str]) -> int:
    """``prepare DATA_DIR CACHE_DIR --size N``: pre-resize the images for fast epochs."""
    parser = OneLineArgumentParser(
        prog=f"{Path(sys.argv[0]).name} prepare",
        description="Pre-resize train_images/ and test_images/ of DATA_DIR into CACHE_DIR"
        " (resumable; train with --data.cache_dir CACHE_DIR).",
    )
    parser.add_argument("data_dir", type=Path, help="the Kaggle-layout data folder")
    parser.add_argument("cache_dir", type=Path, help="where the resized copies go")
    parser.add_argument(
        "--size", type=positive_int, default=512, help="shorter side in pixels (512)"
    )
    parser.add_argument("--workers", type=positive_int, default=None, help="processes (all cores)")
    args = parser.parse_args(argv)
    from .cache import prepare_cache  # loads PIL and torch only for this command

    try:
        report = prepare_cache(args.data_dir, args.cache_dir, args.size, args.workers)
    except KeyboardInterrupt:
        print(
            f"interrupted: finished images are kept in {args.cache_dir}; run the same command"
            " again to resume",
            file=sys.stderr,
        )
        return 130
    removed = f", {report.removed} stale copies removed" if report.removed else ""
    print(
        f"cached {report.written} images, {report.skipped} already done,"
        f" {len(report.failed)} unreadable{removed} -> {args.cache_dir}"
    )
    if report.failed:
        print(f"{len(report.failed)} files could not be cached:", file=sys.stderr)
        for line in report.failed:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


def one_line(exc: BaseException) -> str:
    """The message of a user error, even when a DataLoader worker wrapped it in a traceback."""
    text = str(exc).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1]
        text = text.split("Error: ", 1)[-1] if "Error: " in text else text
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(overview())
        return 0 if args else 2
    try:
        if args and args[0] == "sample-data":
            return sample_data_command(args[1:])
        if args and args[0] == "prepare":
            return prepare_command(args[1:])
        from .lightning_cli import run_cli  # Lightning loads only for the commands that need it

        run_cli(None if argv is None else args, description=__doc__)
    except UserError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # a parser's --help (0) or its refusal of an option (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
