"""Backbones: a timm model, a torchvision model by name, or any ``nn.Module``, turned into a
feature extractor (the LightningModule puts its dropout and linear head on top).

timm: ``timm/<architecture>[.<pretrained tag>]``, e.g. ``timm/convnext_tiny.fb_in22k`` (the tag
picks which published weights ``pretrained`` means; none: timm's default); its classifier is
reset to pooled features. Its ``pretrained`` is ``true`` (timm's own source: the Hugging Face cache,
downloading there when online), a weights file (``/path/model.safetensors``, ``.pth`` or ``.bin``,
of the same architecture and the tag's head) or ``local-dir:/path/folder``, a folder written by
``timm.models.save_for_hf`` whose ``config.json`` names the same architecture. The backbone name
is what a checkpoint keeps: it rebuilds the model anywhere, with no weights source and no network.
A ViT, DeiT or EVA takes any image size; another model timm builds for one size (Swin, MaxViT)
takes that size only (``check_image_size``).

torchvision: its names without a prefix (``resnet18``, ``efficientnet_b0``...); ``pretrained`` is
``true`` (torchvision's default weights, in the torch hub cache) or a state-dict file.

Your own module: put its class in this package (``src/<package>/my_backbones.py``) and name it in
a config, ``backbone: {class_path: <package>.my_backbones.MyNet, init_args: {...}}``; ``package``
ships it in the project's wheel. Pretrained weights are opt-in, and every weights file is read
safely (safetensors, or torch files with ``weights_only=True``): a file planted there cannot run
code."""

from __future__ import annotations

import difflib
import http.client
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import huggingface_hub.constants
import timm
import torch
import torchvision
from torch import nn

from .transforms import IMAGENET_MEAN, IMAGENET_STD
from .utils.class_paths import build_from_class_path
from .utils.errors import BackboneError
from .utils.jsonfile import field, read_json
from .utils.torchfiles import load_torch_file, refusal_reason

TIMM = "timm/"  # the prefix of a timm backbone name
LOCAL_DIR = "local-dir:"  # the prefix of a pretrained folder written by timm.models.save_for_hf


def _torchvision_names() -> list[str]:
    return torchvision.models.list_models(module=torchvision.models)


def check_backbone_name(name: str) -> None:
    """Raise ``BackboneError`` with close matches when ``name`` is neither ``timm/<a timm model>``
    nor a torchvision classifier."""
    if name.startswith(TIMM):
        _check_timm_name(name.removeprefix(TIMM))
        return
    names = _torchvision_names()
    if name in names:
        return
    if timm.is_model(name.partition(".")[0]):
        hint = f"; timm's {name} is spelled {TIMM}{name}"
    else:
        lowered = {n.lower(): n for n in names}
        close = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(lowered[c] for c in close)}?" if close else ""
    raise BackboneError(
        f"backbone {name!r} is not a torchvision classification model{hint}"
        f" (see torchvision.models.list_models(module=torchvision.models), or {TIMM}<architecture>"
        " for timm's)"
    )


def _check_timm_name(name: str) -> None:
    """``BackboneError`` naming the closest timm architectures, or the tags of this one."""
    architecture, _, tag = name.partition(".")
    if not timm.is_model(architecture):
        close = difflib.get_close_matches(architecture.lower(), timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(TIMM + c for c in close)}?" if close else ""
        if architecture in _torchvision_names():
            hint += f" (torchvision's {architecture} has no prefix)"
        raise BackboneError(
            f"backbone {TIMM + name!r}: timm {timm.__version__} has no architecture"
            f" {architecture!r}{hint} (see timm.list_models())"
        )
    tags = [n.partition(".")[2] for n in timm.list_pretrained(f"{architecture}.*")]
    if tag and tag not in tags:
        raise BackboneError(
            f"backbone {TIMM + name!r}: timm {timm.__version__} has no pretrained tag {tag!r} for"
            f" {architecture}; its tags: {', '.join(tags) or 'none'}"
        )


def _timm_backbone(name: str, pretrained: bool | str) -> tuple[nn.Module, int]:
    """The timm model ``timm/<name>`` with its classifier reset, and its pooled feature width."""
    model_name = name.removeprefix(TIMM)
    _check_timm_name(model_name)
    overlay = _weights_source(name, pretrained) if isinstance(pretrained, str) else None
    try:
        # Built with the head of the tag's weights, so they load strictly; then reset to features.
        model: Any = _create_timm_model(model_name, pretrained, overlay)
    except Exception as exc:  # timm, torch, safetensors and huggingface_hub raise many types
        raise BackboneError(_weights_failure(name, pretrained, exc)) from None
    model.reset_classifier(0)
    return model, int(getattr(model, "head_hidden_size", None) or model.num_features)


# timm modules whose models all take ``dynamic_img_size`` in every timm this project runs on
# (1.0.16 and later; Kaggle's image has 1.0.26): a model trained with it rebuilds on Kaggle.
DYNAMIC_SIZE_MODULES = ("vision_transformer", "deit", "eva")


def _create_timm_model(
    model_name: str, pretrained: bool | str, overlay: dict[str, Any] | None
) -> nn.Module:
    """timm's model (timm's model API: reset_classifier, num_features). A ViT, DeiT or EVA is built
    to take any image size (``dynamic_img_size``: its position embeddings resampled to each
    input's patch grid); other models published for one size take only that one (see
    ``check_image_size``)."""
    architecture = model_name.partition(".")[0]
    dynamic = any(architecture in timm.list_models(module=m) for m in DYNAMIC_SIZE_MODULES)
    extra: dict[str, Any] = {"dynamic_img_size": True} if dynamic else {}
    return timm.create_model(
        model_name, pretrained=bool(pretrained), pretrained_cfg_overlay=overlay, **extra
    )


def input_stats(backbone: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The per-channel mean and std a backbone's images are normalised with: those of the
    weights timm publishes for it (e.g. 0.5 for AugReg ViTs, CLIP's for CLIP towers), else
    ImageNet's (torchvision models, your own modules)."""
    config = getattr(backbone, "pretrained_cfg", None) or {}
    mean, std = config.get("mean"), config.get("std")
    if mean is None or std is None or len(mean) != 3 or len(std) != 3:
        return IMAGENET_MEAN, IMAGENET_STD
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def fixed_input_size(backbone: nn.Module) -> int | None:
    """The one image side a backbone takes (a timm model such as Swin or MaxViT, built for one
    size), or None when it takes any size."""
    config = getattr(backbone, "pretrained_cfg", None) or {}
    if getattr(backbone, "dynamic_img_size", False) or not config.get("fixed_input_size"):
        return None
    return int(config["input_size"][-1])


def check_image_size(backbone: nn.Module, name: object, image_size: int | None) -> None:
    """``BackboneError`` if ``backbone`` takes one image size and the data has another."""
    size = fixed_input_size(backbone)
    if size is not None and image_size is not None and size != image_size:
        raise BackboneError(
            f"backbone {name!r} takes {size}x{size} images only (timm {timm.__version__} builds"
            f" it for one size): pass --data.image_size {size}, or a backbone published at"
            f" {image_size} px"
        )


def _weights_source(name: str, pretrained: str) -> dict[str, Any]:
    """timm's ``pretrained_cfg_overlay`` that reads a local file or ``local-dir:`` folder."""
    if not pretrained.startswith(LOCAL_DIR):
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise BackboneError(f"{path}: pretrained weights file not found")
        return {"file": str(path)}
    folder = Path(pretrained.removeprefix(LOCAL_DIR)).expanduser()
    if not (folder / "config.json").is_file():
        raise BackboneError(
            f"{folder}: no config.json; pass a folder written by timm.models.save_for_hf"
        )
    config = read_json(folder / "config.json", lambda data: data, "timm config")
    architecture = field(config, "architecture", str)
    expected = name.removeprefix(TIMM).partition(".")[0]
    if architecture != expected:
        raise BackboneError(
            f"{folder} holds weights of {architecture}, not of backbone {name}: pass"
            f" --model.backbone {TIMM}{architecture}, or a folder saved from {expected}"
        )
    overlay: dict[str, Any] = {"source": "local-dir", "file": str(folder)}
    if isinstance(config.get("num_classes"), int):  # the head the folder's weights were saved with
        overlay["num_classes"] = config["num_classes"]
    return overlay


def _weights_failure(name: str, pretrained: bool | str, exc: Exception) -> str:
    """The one line saying why ``name``'s pretrained weights did not load, and what to do."""
    if isinstance(pretrained, str):
        text = " ".join(str(exc).split())
        if "loading state_dict" in text:  # torch's strict load: other keys or shapes
            return (
                f"{pretrained}: these weights do not fit backbone {name} ({text[:300]}); pass"
                f" weights of {name}, or name the architecture and tag they were saved from"
                f" ({TIMM}<architecture>.<tag>: the tag sets the head size)"
            )
        return f"{pretrained}: not readable as weights of {name} ({refusal_reason(exc)})"
    source = timm.models.get_pretrained_cfg(name.removeprefix(TIMM))
    hub_id = getattr(source, "hf_hub_id", None)
    where = f" from https://huggingface.co/{hub_id}" if hub_id else ""
    return (
        f"cannot get pretrained weights for {name} ({refusal_reason(exc)}); online, timm"
        f" downloads them into the Hugging Face cache {huggingface_hub.constants.HF_HUB_CACHE}"
        " (HF_HOME moves it; HF_HUB_OFFLINE=1 reads only it); offline, pass a file"
        f"{where}: --model.pretrained /path/model.safetensors (or .pth, .bin), or a folder"
        f" written by timm.models.save_for_hf: --model.pretrained {LOCAL_DIR}/path/folder"
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
        backbone: ``timm/<architecture>[.<tag>]`` (``"timm/convnext_tiny.fb_in22k"``), a
            torchvision classification model name (``"resnet18"``, ``"convnext_tiny"``...), an
            ``nn.Module`` (used as given) or a ``{class_path, init_args}`` config of one.
        pretrained: ``False`` for random init; ``True`` for the published weights (timm: the
            Hugging Face cache, else download; torchvision: the torch hub cache, else download);
            a path to a local weights file; for timm, ``local-dir:<folder>`` (``save_for_hf``)."""
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
    if backbone.startswith(TIMM):
        return _timm_backbone(backbone, pretrained)
    if isinstance(pretrained, str) and pretrained.startswith(LOCAL_DIR):
        raise BackboneError(
            f"--model.pretrained {pretrained}: a {LOCAL_DIR} folder holds timm weights; name a"
            f" timm backbone ({TIMM}<architecture>) or pass {backbone}'s state-dict file"
        )
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
