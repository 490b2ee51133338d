"""Backbones: a torchvision model by name, or any ``nn.Module``, turned into a feature extractor
(its last ``nn.Linear`` replaced by ``nn.Identity``; the LightningModule puts its head on top).

Your own module: put its class in this package (``src/<package>/my_backbones.py``) and name it in
a config, ``backbone: {class_path: <package>.my_backbones.MyNet, init_args: {...}}``; ``package``
ships it in the project's wheel. Pretrained weights are opt-in, and every weights file (local or
in the torch hub cache) is read with ``weights_only=True``: a file planted there cannot run code."""

from __future__ import annotations

import difflib
import http.client
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from .utils.class_paths import build_from_class_path
from .utils.errors import BackboneError
from .utils.torchfiles import load_torch_file, refusal_reason


def check_backbone_name(name: str) -> None:
    """Raise ``BackboneError`` with close matches when ``name`` is not a torchvision classifier."""
    names = torchvision.models.list_models(module=torchvision.models)
    if name in names:
        return
    lowered = {n.lower(): n for n in names}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(lowered[c] for c in close)}?" if close else ""
    raise BackboneError(
        f"backbone {name!r} is not a torchvision classification model{hint}"
        " (see torchvision.models.list_models(module=torchvision.models))"
    )


def _default_weights(name: str) -> dict[str, torch.Tensor]:
    """State dict of ``name``'s default torchvision weights: the torch hub cache file, else
    downloaded there (hash checked, atomic) or a ``BackboneError`` saying how to supply it."""
    url = torchvision.models.get_model_weights(name).DEFAULT.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
    hash_prefix = re.search(r"-([a-f0-9]+)\.", cached.name)
    try:
        if not cached.is_file():
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(
                url, str(cached), hash_prefix.group(1) if hash_prefix else None, progress=True
            )
    except (OSError, RuntimeError, http.client.HTTPException) as exc:
        # URLError and timeouts are OSErrors; a hash mismatch is a RuntimeError
        raise BackboneError(
            f"cannot download pretrained weights for {name} ({refusal_reason(exc)}); download {url}"
            f" elsewhere and pass it: --model.pretrained /path/to/{cached.name}, or put it as"
            f" {cached.name} in {cached.parent} (the torch hub cache; TORCH_HOME moves it)"
        ) from None
    return _read_state_dict(
        cached,
        f"delete it to download {name}'s weights again, or pass a file you trust:"
        " --model.pretrained PATH",
    )


def _read_state_dict(path: str | Path, remedy: str) -> dict[str, torch.Tensor]:
    """State dict (bare or under ``state_dict``) from a weights file, loaded ``weights_only``."""
    state = load_torch_file(path, "pretrained weights", BackboneError, remedy)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BackboneError(f"{path}: expected a state dict, found {type(state).__name__}")
    return state


def strip_classifier(module: nn.Module) -> int:
    """Replace the last ``nn.Linear`` of ``module`` by ``nn.Identity``; return the feature width
    (without one, the module is taken to output features: one forward pass of a 224 image)."""
    linears = [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Linear)]
    if linears:
        name, linear = linears[-1]
        parent, _, child = name.rpartition(".")
        setattr(module.get_submodule(parent), child, nn.Identity())
        return linear.in_features
    was_training = module.training
    module.eval()
    with torch.no_grad():
        out = module(torch.zeros(1, 3, 224, 224))
    module.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise BackboneError(
            f"backbone {type(module).__name__} has no nn.Linear classifier and outputs {shape},"
            " not (batch, features); wrap it so that it returns a 2-D feature tensor"
        )
    return out.shape[1]


def create_backbone(
    backbone: str | nn.Module | Mapping[str, Any], pretrained: bool | str = False
) -> tuple[nn.Module, int]:
    """A feature extractor and its output width.

    Args:
        backbone: a torchvision classification model name (``"resnet18"``, ``"convnext_tiny"``...),
            an ``nn.Module`` (used as given) or a ``{class_path, init_args}`` config of one.
        pretrained: ``False`` for random init, ``True`` for torchvision's default weights (torch hub
            cache, else download), or a path to a local state-dict file."""
    if isinstance(backbone, Mapping):
        backbone = build_from_class_path(backbone)
    if isinstance(backbone, nn.Module):
        if pretrained:
            raise BackboneError(
                "pretrained applies to a backbone given by name; load the weights"
                " into your nn.Module when it is built"
            )
        return backbone, strip_classifier(backbone)
    check_backbone_name(backbone)
    model = torchvision.models.get_model(backbone, weights=None)
    if pretrained:
        state = (
            _read_state_dict(pretrained, "pass a file of tensors (torch.save of a state_dict)")
            if isinstance(pretrained, str)
            else _default_weights(backbone)
        )
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise BackboneError(f"pretrained weights do not fit {backbone}: {first}") from None
    return model, strip_classifier(model)
