"""An exponential moving average (EMA) of the weights, ``fit --ema_decay D``, kept by Lightning's
``WeightAveraging``. Validation runs on the average; each checkpoint's ``state_dict`` is the
average (so ``best``/``last``, ``predict``, ``cv``'s out-of-fold rows and ``package``'s stripped
weights are too), with the raw weights in ``current_model_state`` and the count in
``averaging_state``: resuming with ``--ckpt_path last`` restores both."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import WeightAveraging
from torch.optim.swa_utils import get_ema_multi_avg_fn

from ..predict.inference import Checkpoint
from ..utils.errors import DataError


class ModelEMA(WeightAveraging):
    """The EMA of the parameters and batch-norm statistics, updated after every optimizer step:
    ``average = decay * average + (1 - decay) * weights``, the first update a copy.

    Lightning's ``EMAWeightAveraging`` does the same one tensor at a time; this one updates each
    dtype's tensors in one fused ``_foreach_lerp_`` (3 times faster on a CPU, and one kernel
    launch instead of hundreds on a GPU)."""

    def __init__(self, decay: float) -> None:
        super().__init__(multi_avg_fn=get_ema_multi_avg_fn(decay))
        self.decay = float(decay)  # not the option's float subclass: checkpoints hold plain data

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            # Lightning sets callbacks up before the model, whose setup builds the head from the
            # data's labels: the average must copy the whole model.
            pl_module.setup(stage)
        super().setup(trainer, pl_module, stage)

    def state_dict(self) -> dict[str, Any]:
        """Lightning's state and the decay, which ``check_resume`` names."""
        return {**super().state_dict(), "decay": self.decay}


def check_resume(checkpoint: Checkpoint, decay: float | None) -> None:
    """``DataError`` if ``fit`` resumes a run that averaged its weights with the averaging off:
    Lightning would take the average for the raw weights and drop the raw ones."""
    if decay is None and "current_model_state" in checkpoint.content:
        state = (checkpoint.content.get("callbacks") or {}).get(ModelEMA.__qualname__) or {}
        flag = f"--ema_decay {state['decay']}" if "decay" in state else "--ema_decay DECAY"
        raise DataError(
            f"{checkpoint.path}: its run kept an average of the weights (EMA); resume it with"
            f" {flag}"
        )
