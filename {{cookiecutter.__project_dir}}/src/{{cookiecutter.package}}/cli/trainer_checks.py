"""One ``error:`` line, not a traceback, for a bad flag: the parser's multi-line messages,
settings this machine cannot run or Lightning would fail on mid-run (checked before Lightning
sees them) and whatever else Lightning refuses while building the Trainer."""

from __future__ import annotations

import inspect
import re
from typing import Any

import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from pytorch_lightning import Trainer

from ..utils.errors import DataError

TRAINER_FLAGS = tuple(inspect.signature(Trainer).parameters)
# Words in Lightning's messages that point at a flag the message does not name.
FLAG_HINTS = {"strategy": "strategy", "xla": "accelerator", "accelerator": "accelerator"}
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
    restricted = RESTRICTION.match(reason)
    flag = f"--{key.group(1)}"
    if restricted:
        value = restricted.group("value") or given
        rule = re.sub(r"v\s*([<>=!]+)\s*", r"\1 ", restricted.group("rule"))
        return f"{flag} {value}: must be {rule} ({restricted.group('type')})"
    wrong = WRONG_TYPE.match(reason)
    if wrong:
        return f"{flag}{' ' + given if given else ''}: not a {wrong['type']} ({wrong['why']})"
    return f"{flag}{' ' + given if given else ''}: {reason}"


def check_trainer_settings(trainer: Any) -> None:
    """Refuse an accelerator this machine does not have, naming the flag and what to use."""
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


def refuse_partial_prediction(trainer: Trainer) -> None:
    """``DataError`` if the Trainer would predict only part of the test set (a fraction, 0
    batches, ``fast_dev_run``; the submission writer counts the images of a whole number)."""
    limit = trainer.limit_predict_batches
    if getattr(trainer, "fast_dev_run", False):
        flag = "--trainer.fast_dev_run"
    elif limit is not None and limit < 1:
        flag = f"--trainer.limit_predict_batches {limit}"
    else:
        return
    raise DataError(f"{flag}: a submission must cover every test image; predict without it")


def check_counts(trainer: Any, checkpoint: Any) -> None:
    """Refuse epoch, batch and checkpoint counts Lightning would accept but could not run with."""
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


def drop_progress_bars(callbacks: Any) -> Any:
    """The callback list without progress bars (for ``--trainer.enable_progress_bar false``)."""
    if not isinstance(callbacks, list):
        return callbacks
    return [cb for cb in callbacks if not _class_path(cb).endswith("ProgressBar")]


def _class_path(callback: Any) -> str:
    if hasattr(callback, "get"):
        return str(callback.get("class_path", ""))
    return type(callback).__name__


def trainer_refusal(exc: BaseException) -> DataError | None:
    """A one-line ``DataError`` for Lightning refusing the Trainer's settings, else ``None``."""
    if not isinstance(exc, (MisconfigurationException, ValueError, TypeError, ImportError)):
        return None
    message = " ".join(str(exc).split())
    names = [name for name in TRAINER_FLAGS if re.search(rf"\b{name}\b", message)]
    names += [flag for word, flag in FLAG_HINTS.items() if word in message.lower()]
    flags = [f"--trainer.{name}" for name in dict.fromkeys(names)]
    named = f" ({', '.join(flags)})" if flags else ""
    return DataError(f"Lightning refused the trainer settings{named}: {message}")
