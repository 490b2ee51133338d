"""The ``nn.Module`` a ``{class_path, init_args}`` builds, for class paths of this package only:
a checkpoint is data that must not choose which code runs (importing ``cli/__main__`` would)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from torch import nn

from .errors import BackboneError

PACKAGE = __name__.split(".")[0]


def is_own_class_path(class_path: str) -> bool:
    """Whether ``class_path`` names a public attribute of a public module of this package."""
    parts = class_path.split(".")
    public = all(part.isidentifier() and not part.startswith("_") for part in parts[1:])
    return parts[0] == PACKAGE and len(parts) > 1 and public


def backbone_class(class_path: Any) -> type[nn.Module]:
    """The ``nn.Module`` class ``class_path`` names, imported only if ``is_own_class_path``."""
    if not (isinstance(class_path, str) and is_own_class_path(class_path)):
        raise BackboneError(
            f"backbone class path {class_path!r}: name a class of the package {PACKAGE}"
            f" ({PACKAGE}.my_backbones.MyNet for src/{PACKAGE}/my_backbones.py)"
        )
    module, _, name = class_path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise BackboneError(f"backbone class {class_path} cannot be imported: {exc}") from None
    if not (isinstance(found, type) and issubclass(found, nn.Module)):
        raise BackboneError(f"backbone class {class_path} is not an nn.Module")
    return found


def build_from_class_path(config: Mapping[str, Any]) -> nn.Module:
    """The ``nn.Module`` of a ``{class_path, init_args}`` config (nested ones built too)."""
    built, init_args = backbone_class(config.get("class_path")), config.get("init_args") or {}
    if not isinstance(init_args, Mapping):
        raise BackboneError(f"backbone {built.__name__}: init_args must map names to values")
    arguments = dict(init_args)
    for key, value in init_args.items():
        if isinstance(value, Mapping) and "class_path" in value:
            arguments[key] = build_from_class_path(value)
    try:
        return built(**arguments)
    except TypeError as exc:
        raise BackboneError(f"backbone {built.__name__}: {exc}") from None
