"""Backbones: a torchvision model by name, or any ``nn.Module``, turned into a feature extractor.

The classifier is found generically (the last ``nn.Linear`` the model registers: ``fc`` in ResNet
and RegNet, ``classifier[-1]`` in EfficientNet, ConvNeXt and MobileNet, ``heads.head`` in ViT)
and replaced by ``nn.Identity``; the LightningModule puts its own head on the features.
Pretrained weights are opt-in and never fetched silently: without a network, the error says how
to supply them.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from urllib.error import URLError

import torch
import torchvision
from torch import nn

from .errors import load_torch_file


class BackboneError(ValueError):
    """The backbone name, module or weights cannot be used; the message says what to do."""


def classification_models() -> list[str]:
    """Names accepted as ``backbone``: torchvision's image-classification models."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


def check_backbone_name(name: str) -> None:
    """Raise ``BackboneError`` with close matches when ``name`` is not a torchvision classifier."""
    names = classification_models()
    if name in names:
        return
    lowered = {n.lower(): n for n in names}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(lowered[c] for c in close)}?" if close else ""
    raise BackboneError(
        f"backbone {name!r} is not a torchvision classification model{hint}"
        " (see torchvision.models.list_models(module=torchvision.models))"
    )


def _download_default_weights(name: str) -> dict[str, torch.Tensor]:
    """State dict of ``name``'s default torchvision weights, from the hub cache or the network."""
    weights = torchvision.models.get_model_weights(name).DEFAULT
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    try:
        return torch.hub.load_state_dict_from_url(weights.url, map_location="cpu", progress=True)
    except (URLError, OSError, ConnectionError) as exc:
        raise BackboneError(
            f"cannot download pretrained weights for {name} ({type(exc).__name__}: {exc}); "
            f"offline, put the file {cached.name} at {cached} (the torch hub cache; TORCH_HOME "
            f"moves it) or pass a local file: --model.pretrained /path/to/{cached.name}"
        ) from None


def _load_weights_file(path: str) -> dict[str, torch.Tensor]:
    """State dict from a local ``.pth`` / ``.ckpt`` file (a bare or a wrapped ``state_dict``)."""
    state = load_torch_file(path, "pretrained weights", BackboneError)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BackboneError(f"{path}: expected a state dict, found {type(state).__name__}")
    return state


def _set_submodule(root: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def strip_classifier(module: nn.Module, probe_size: int = 224) -> int:
    """Replace the last ``nn.Linear`` of ``module`` by ``nn.Identity``; return the feature width.

    A module without any ``nn.Linear`` is taken to output features already; its width is found
    by one forward pass of a ``probe_size`` image.
    """
    linears = [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Linear)]
    if linears:
        name, linear = linears[-1]
        _set_submodule(module, name, nn.Identity())
        return linear.in_features
    was_training = module.training
    module.eval()
    with torch.no_grad():
        out = module(torch.zeros(1, 3, probe_size, probe_size))
    module.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise BackboneError(
            f"backbone {type(module).__name__} has no nn.Linear classifier and outputs {shape},"
            " not (batch, features); wrap it so that it returns a 2-D feature tensor"
        )
    return out.shape[1]


def create_backbone(
    backbone: str | nn.Module, pretrained: bool | str = False
) -> tuple[nn.Module, int]:
    """A feature extractor and its output width.

    Args:
        backbone: a torchvision classification model name (``"resnet18"``, ``"efficientnet_b0"``,
            ``"convnext_tiny"``...) or an ``nn.Module`` instance (used as given).
        pretrained: ``False`` for random init, ``True`` for torchvision's default weights (torch hub
            cache, else download), or a path to a local state-dict file.
    """
    if isinstance(backbone, nn.Module):
        if pretrained:
            raise BackboneError(
                "pretrained applies to a backbone given by name; load the weights"
                " into your nn.Module before passing it"
            )
        return backbone, strip_classifier(backbone)
    check_backbone_name(backbone)
    model = torchvision.models.get_model(backbone, weights=None)
    if pretrained:
        state = (
            _load_weights_file(pretrained)
            if isinstance(pretrained, str)
            else _download_default_weights(backbone)
        )
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise BackboneError(f"pretrained weights do not fit {backbone}: {first}") from None
    return model, strip_classifier(model)
