"""Helpers for the jobs that run many ``fit`` runs from one set of fit flags (``cv``, ``tune``)."""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from ..data import PlantDataModule
from ..cli.lightning import OneLineErrorParser, PlantCLI, parser_kwargs
from ..models import PlantClassifier

# PyYAML (a dependency of jsonargparse) ships no types; the dev extra installs no stubs for it.
yaml: Any = importlib.import_module("yaml")
SHOWN_CHARS = 40


class ParsedOnly(Exception):
    """Stops a ``ConfigOnlyCLI`` once its flags are parsed and checked, before anything is built."""


class ConfigOnlyCLI(PlantCLI):
    """Parses and checks a ``fit`` command line like ``fit`` does, but builds nothing."""

    def before_instantiate_classes(self) -> None:
        raise ParsedOnly(self)


def config_only_cli(fit_args: list[str], exit_on_error: bool = True) -> ConfigOnlyCLI:
    """The ``fit`` CLI of ``fit_args``, parsed and nothing built (its parser is reusable). Option
    errors end like ``fit``'s (``SystemExit(2)``), or raise with ``exit_on_error=False``."""
    try:
        return ConfigOnlyCLI(
            PlantClassifier,
            PlantDataModule,
            args=["fit", *fit_args],
            save_config_callback=None,
            parser_class=OneLineErrorParser,
            parser_kwargs=parser_kwargs(exit_on_error=exit_on_error),
        )
    except ParsedOnly as parsed:
        return cast(ConfigOnlyCLI, parsed.args[0])


def parse_fit_config(args: list[str]) -> Any:
    """The resolved ``fit`` configuration of ``args`` (a jsonargparse Namespace)."""
    return config_only_cli(args).config.fit


def fit_config_yaml(cli: ConfigOnlyCLI, skip_none: bool = True) -> str:
    """The resolved ``fit`` configuration of ``cli`` as YAML (unset options left out)."""
    whole = yaml.safe_load(cli.parser.dump(cli.config, skip_none=skip_none))
    return str(yaml.safe_dump(whole["fit"], sort_keys=False, allow_unicode=True))


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"lr": 0.1}}`` -> ``{"model.lr": 0.1}`` (lists stay whole values)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        nested = isinstance(value, dict)
        flat.update(flat_config(value, f"{prefix}{key}.") if nested else {f"{prefix}{key}": value})
    return flat


def config_changes(
    before: dict[str, Any], after: dict[str, Any], ignored: Sequence[str] = ()
) -> list[str]:
    """``key (old -> new)`` per dotted key that differs, except ``ignored`` ones and their keys."""
    old, new = flat_config(before), flat_config(after)
    return [
        f"{key} ({shown(old.get(key))} -> {shown(new.get(key))})"
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
        and not any(key == skip or key.startswith(f"{skip}.") for skip in ignored)
    ]


def shown(value: Any) -> str:
    """A configuration value in a one-line message, cut to ``SHOWN_CHARS`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def run_folder_flags(config: Any, run: Path) -> list[str]:
    """The flags that make a ``fit`` of ``config`` write its checkpoints and logs into ``run``."""
    flags = ["--checkpoint.dirpath", str(run / "checkpoints")]
    flags += ["--trainer.default_root_dir", str(run)]
    if "trainer.logger.init_args.save_dir" in config:  # a jsonargparse Namespace
        flags += ["--trainer.logger.init_args.save_dir", str(run / "logs")]
    return flags
