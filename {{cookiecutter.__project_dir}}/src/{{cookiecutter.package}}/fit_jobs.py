"""Helpers for the jobs that run many ``fit`` runs from one set of fit flags (``cv``, ``tune``).

``parse_fit_config`` checks and resolves the flags like ``fit`` does without building anything;
``run_folder_flags`` sends one run's checkpoints and logs into its own folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .data import PlantDataModule
from .lightning_cli import OneLineErrorParser, PlantCLI
from .models import PlantClassifier


class ConfigOnlyCLI(PlantCLI):
    """Parses and checks a ``fit`` command line like ``fit`` does, but builds nothing."""

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass

    def _run_subcommand(self, subcommand: str) -> None:
        pass


def config_only_cli(fit_args: list[str], exit_on_error: bool = True) -> ConfigOnlyCLI:
    """The ``fit`` CLI of ``fit_args``, parsed and nothing built (its parser is reusable).

    Option errors end like they do for ``fit``: one ``error:`` line and ``SystemExit(2)``
    (with ``exit_on_error=False``, the parser's exception instead).
    """
    return ConfigOnlyCLI(
        PlantClassifier,
        PlantDataModule,
        args=["fit", *fit_args],
        save_config_callback=None,
        parser_class=OneLineErrorParser,
        parser_kwargs={"exit_on_error": exit_on_error},
    )


def parse_fit_config(args: list[str]) -> Any:
    """The resolved ``fit`` configuration of ``args`` (a jsonargparse Namespace)."""
    return config_only_cli(args).config.fit


def run_folder_flags(config: Any, run: Path) -> list[str]:
    """The flags that make a ``fit`` of ``config`` write its checkpoints and logs into ``run``.

    Used by the jobs that run many fits (``cv`` folds, ``tune`` trials): the logger's folder is
    moved only when the configured logger has a ``save_dir`` (the configs' CSVLogger does).
    """
    flags = ["--checkpoint.dirpath", str(run / "checkpoints")]
    flags += ["--trainer.default_root_dir", str(run)]
    logger = config.trainer.get("logger")
    if isinstance(logger, dict) or hasattr(logger, "init_args"):
        init_args = logger.get("init_args") or {}
        if "save_dir" in init_args:
            flags += ["--trainer.logger.init_args.save_dir", str(run / "logs")]
    return flags
