"""One ``error:`` line, not a traceback: the parser's multi-line messages, settings this machine
cannot run or Lightning would fail on mid-run or refuses, and a checkpoint's model settings."""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from pytorch_lightning import Trainer

from ..models import PlantClassifier
from ..utils.class_paths import PACKAGE, backbone_class, is_own_class_path
from ..utils.errors import BackboneError, DataError

TRAINER_FLAGS = tuple(inspect.signature(Trainer).parameters)
# Words in Lightning's messages that point at a flag the message does not name.
FLAG_HINTS = {"strategy": "strategy", "xla": "accelerator", "accelerator": "accelerator"}
TRAINER_REFUSALS = (MisconfigurationException, ValueError, TypeError, ImportError)
RESTRICTION = re.compile(
    r"Not of type (?P<type>\w+): (?:(?P<value>.*?) )?does not conform to restriction (?P<rule>.+)"
)
WRONG_TYPE = re.compile(r"Not of type (?P<type>\w+): (?P<why>.+)")


def one_line_parse_error(message: str) -> str:
    """The parser's (often multi-line) message as one line naming the flag, value and rule."""
    lines = [line.strip(" -") for line in message.strip().splitlines() if line.strip(" -")]
    key = re.match(r'Parser key "([^"]+)"', lines[0]) if lines else None
    if key is None:
        return " ".join(" ".join(lines).split())
    reasons = [line for line in lines[1:] if line.startswith(("Not of type", "Expected"))]
    specific = [line for line in reasons if "NoneType" not in line]
    reason = (specific or reasons or lines[1:] or ["invalid value"])[0]
    given = next((line.split(":", 1)[1].strip() for line in lines if "Given value:" in line), "")
    restricted, wrong = RESTRICTION.match(reason), WRONG_TYPE.match(reason)
    if restricted:
        rule = re.sub(r"v\s*([<>=!]+)\s*", r"\1 ", restricted["rule"])
        return f"--{key[1]} {restricted['value'] or given}: must be {rule} ({restricted['type']})"
    shown = f"--{key[1]} {given}".rstrip()
    return f"{shown}: not a {wrong['type']} ({wrong['why']})" if wrong else f"{shown}: {reason}"


def check_trainer_settings(trainer: Any, checkpoint: Any = None) -> None:
    """Refuse an accelerator or precision this machine cannot run, naming what to use instead,
    and epoch, batch and checkpoint counts Lightning would accept but could not run with."""
    accelerator = str(trainer.get("accelerator", "auto")).lower()
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise DataError(
            f"--trainer.accelerator {accelerator}: no CUDA GPU is visible here"
            " (torch.cuda.is_available() is False); use --trainer.accelerator cpu or auto"
        )
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise DataError(
            "--trainer.accelerator mps: Apple's Metal backend is not available here;"
            " use --trainer.accelerator cpu or auto"
        )
    precision = str(trainer.get("precision"))
    if precision in ("64", "64-true", "double"):
        raise DataError(
            f"--trainer.precision {precision}: this package feeds float32 batches; use 32-true,"
            " bf16-mixed (CPU with bfloat16, recent GPUs) or 16-mixed (GPU)"
        )
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if on_cpu and precision in ("16", "16-mixed", "16-true", "half"):
        raise DataError(
            f"--trainer.precision {precision}: float16 does not run on the CPU;"
            " use bf16-mixed or 32-true (or leave it unset to detect the best one)"
        )
    if trainer.get("max_epochs") == 0:
        raise DataError(
            "--trainer.max_epochs 0: fit would train nothing; give 1 or more (-1: no limit)"
        )
    accumulate = trainer.get("accumulate_grad_batches")
    if isinstance(accumulate, int) and accumulate < 1:
        raise DataError(f"--trainer.accumulate_grad_batches {accumulate}: must be 1 or more")
    top_k = (checkpoint or {}).get("save_top_k")
    if isinstance(top_k, int) and top_k < -1:
        raise DataError(f"--checkpoint.save_top_k {top_k}: must be -1 (keep all), 0 (none) or more")


def refuse_partial_prediction(trainer: Trainer) -> None:
    """``DataError`` if the Trainer would predict only part of the test set (a fraction, 0
    batches, ``fast_dev_run``; the submission writer counts the images of a whole number)."""
    limit, fast = trainer.limit_predict_batches, getattr(trainer, "fast_dev_run", False)
    if fast or limit < 1:
        flag = "fast_dev_run" if fast else f"limit_predict_batches {limit}"
        raise DataError(
            f"--trainer.{flag}: a submission must cover every test image; predict without it"
        )


def drop_progress_bars(callbacks: Any) -> Any:
    """The callback list without progress bars (for ``--trainer.enable_progress_bar false``)."""
    if not isinstance(callbacks, list):
        return callbacks
    return [cb for cb in callbacks if not str(cb.get("class_path", "")).endswith("ProgressBar")]


def trainer_refusal(exc: BaseException) -> DataError:
    """A one-line ``DataError`` for Lightning refusing the Trainer's settings."""
    message = " ".join(str(exc).split())
    names = [name for name in TRAINER_FLAGS if re.search(rf"\b{name}\b", message)]
    names += [flag for word, flag in FLAG_HINTS.items() if word in message.lower()]
    flags = [f"--trainer.{name}" for name in dict.fromkeys(names)]
    named = f" ({', '.join(flags)})" if flags else ""
    return DataError(f"Lightning refused the trainer settings{named}: {message}")


MODEL_CLASS_PATH = f"{PlantClassifier.__module__}.{PlantClassifier.__qualname__}"
MODEL_ARGUMENTS = frozenset(inspect.signature(PlantClassifier).parameters)
# What Lightning itself adds to the hyper-parameters of a model built by its CLI.
LIGHTNING_KEYS = {"_instantiator": "pytorch_lightning.cli.instantiate_module"}
ALLOWED_CLASS_PATHS = frozenset({MODEL_CLASS_PATH, *LIGHTNING_KEYS.values()})
CLASS_PATH_KEYS = ("class_path", "_class_path", *LIGHTNING_KEYS)


def check_hyper_parameters(path: str | Path, hparams: Mapping[str, Any]) -> None:
    """``DataError`` naming ``path`` and the field if a checkpoint's model hyper-parameters fail,
    checked before any class path in them is imported (a checkpoint must not choose which code
    runs): a backbone's names a class of this package, any other is on ``ALLOWED_CLASS_PATHS``."""
    for field, class_path in _class_paths(hparams):
        backbone = field.startswith("backbone.")
        if is_own_class_path(class_path) if backbone else class_path in ALLOWED_CLASS_PATHS:
            continue
        allowed = f"a class of {PACKAGE}" if backbone else ", ".join(sorted(ALLOWED_CLASS_PATHS))
        raise DataError(
            f"{path}: hyper-parameter {field!r} names {class_path!r}, which this package does"
            f" not build (allowed: {allowed}); nothing was imported: use a checkpoint this"
            " package trained"
        )
    unknown = sorted(str(key) for key in hparams if key not in MODEL_ARGUMENTS | {*CLASS_PATH_KEYS})
    if unknown:
        raise DataError(
            f"{path}: hyper-parameter {unknown[0]!r} is not an argument of"
            f" {PlantClassifier.__name__}; use a checkpoint this package trained"
        )
    if "backbone" not in hparams:
        raise DataError(
            f"{path}: no hyper-parameter 'backbone': the model was built on an nn.Module"
            " instance, which its checkpoint does not hold; name the module's class in a config"
            " (--model.backbone.class_path) and the checkpoint will hold it"
        )
    backbone = hparams["backbone"]
    if isinstance(backbone, Mapping) and "class_path" in backbone:
        try:
            backbone_class(backbone["class_path"])
        except BackboneError as exc:
            raise DataError(f"{path}: hyper-parameter 'backbone': {exc}") from None
    elif not isinstance(backbone, str):
        shown = type(backbone).__name__ + (f" {backbone!r}" if len(repr(backbone)) <= 60 else "")
        raise DataError(
            f"{path}: hyper-parameter 'backbone' is {shown}, not a timm or"
            " torchvision model name nor a class path; use a checkpoint this package trained"
        )


def check_backbone_setting(model: Any) -> None:
    """Refuse, before training, a backbone class path its checkpoint could not name."""
    backbone = model.get("backbone")
    backbone = backbone.as_dict() if hasattr(backbone, "as_dict") else backbone
    for field, class_path in _class_paths({"backbone": backbone}):
        if not is_own_class_path(class_path):
            raise DataError(
                f"--model.{field} {class_path}: a checkpoint names only classes of {PACKAGE};"
                f" put yours in src/{PACKAGE}/my_backbones.py (it may wrap a class from elsewhere)"
                f" and name it {PACKAGE}.my_backbones.<Class>"
            )


def _class_paths(value: Any, field: str = "") -> list[tuple[str, str]]:
    """Every ``(field, value)`` of a class-path key anywhere in nested dicts and lists."""
    found: list[tuple[str, str]] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            name = f"{field}.{key}" if field else str(key)
            if key in CLASS_PATH_KEYS:
                found.append((name, str(item)))
            found += _class_paths(item, name)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found += _class_paths(item, f"{field}[{index}]")
    return found
