"""The LightningCLI of the package: fit / validate / test / predict with checks before each run.

Everything a user can get wrong is refused before anything is written, as one ``error:`` line:
option values (the parser enforces the constraints declared in the model's and the data
module's signatures), Trainer settings Lightning would refuse (``trainer_checks``), the
checkpoint (``checkpoints``) and the data (the data module's ``check``).
"""

from __future__ import annotations

import sys
import warnings
from argparse import ArgumentError
from pathlib import Path
from typing import Any, NoReturn

from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from pytorch_lightning.tuner import Tuner

from .argtypes import refuse
from .checkpoints import (
    AtomicCheckpointIO,
    CheckpointInfo,
    EpochCheckpoint,
    inspect_checkpoint,
    refuse_earlier_run,
    resolve_ckpt_path,
)
from .. import metrics
from ..utils.errors import DataError
from ..utils.hardware import default_precision
from ..utils.constraints import PositiveInt
from ..data import PlantDataModule
from ..workflows.cv_files import fold_checkpoints, is_cv_folder
from ..predict.inference import predict_with_ensemble
from .loggers import check_logger_packages
from ..models import PlantClassifier
from ..utils.quiet import drop_adverts
from ..predict.submission import SubmissionWriter
from ..predict.tta import TTA
from ..predict.threshold_report import ThresholdChoice, decide_threshold
from .trainer_checks import (
    LIGHTNING_KEYS,
    check_backbone_setting,
    check_checkpoint_settings,
    check_hyper_parameters,
    check_trainer_settings,
    drop_progress_bars,
    one_line_parse_error,
    refuse_partial_prediction,
    trainer_refusal,
)

THRESHOLD_FLAG = "--model.threshold"

drop_adverts()
# `cv` and `tune` run fits with their own arguments while sys.argv holds theirs: on purpose.
warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")


class OneLineErrorParser(LightningArgumentParser):
    """A parser whose errors are one ``error:`` line naming the option, not the whole usage."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        refuse(parser.prog, one_line_parse_error(message))


class FitConfigSaver(SaveConfigCallback):
    """Save the resolved config beside the logs of a training run only (not for predict).

    A logger without a local folder (MLflow with a database or server store) has no log_dir:
    nothing is saved there, and the run goes on.
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit" and trainer.log_dir is not None:
            super().setup(trainer, pl_module, stage)


class PlantCLI(LightningCLI):
    """LightningCLI with checkpointing, a submission writer and input checks before each run."""

    def _prepare_subcommand_parser(
        self, klass: type, subcommand: str, **kwargs: Any
    ) -> LightningArgumentParser:
        # Remembered so that add_arguments_to_parser gives each subcommand only its own options.
        self._building = subcommand
        return super()._prepare_subcommand_parser(klass, subcommand, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Checkpoint options for every command; batch-size search for fit; output for predict."""
        subcommand = getattr(self, "_building", None)
        parser.add_lightning_class_args(EpochCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.dirpath": "checkpoints",
                "checkpoint.filename": "best-epoch{epoch:02d}",
                "checkpoint.auto_insert_metric_name": False,
                "checkpoint.monitor": metrics.logged_key(),
                "checkpoint.mode": metrics.mode(),
                "checkpoint.save_last": True,
                "checkpoint.enable_version_counter": False,
            }
        )
        if subcommand in ("predict", None):
            parser.add_lightning_class_args(SubmissionWriter, "submission")
            parser.add_argument(
                "--tta",
                type=TTA,
                default="none",
                help="test-time augmentation: average over flipped views (flips: h, v and both)",
            )
        if subcommand in ("fit", None):
            parser.add_argument(
                "--auto_batch_size",
                type=bool,
                default=False,
                help="find the largest batch size that fits (Tuner.scale_batch_size) first",
            )
            parser.add_argument(
                "--auto_batch_size_max_trials",
                type=PositiveInt,
                default=6,
                help="doublings the batch-size finder may try",
            )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, then resolve and check ``--ckpt_path`` and take the label vocabulary from it.

        Lightning reads the checkpoint's hyper-parameters right after this; checking the file
        here turns a missing or broken checkpoint into a one-line error, and ``last`` / ``best``
        become files so that their hyper-parameters are read too.
        """
        super().parse_arguments(parser, args)
        self._members: list[Path] = []
        self._cv_folder: Path | None = None
        self._checkpoint: CheckpointInfo | None = None
        self._threshold: ThresholdChoice | None = None
        given = list(sys.argv[1:] if args is None else args)
        self._threshold_flag = any(str(a).split("=")[0] == THRESHOLD_FLAG for a in given)
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        ckpt_path = config.get("ckpt_path")
        if subcommand == "predict" and not ckpt_path:
            raise DataError("predict needs a trained model: pass --ckpt_path CHECKPOINT")
        if subcommand == "predict" and ckpt_path and Path(ckpt_path).is_dir():
            if not is_cv_folder(ckpt_path):
                raise DataError(f"--ckpt_path {ckpt_path}: a folder must be the output of cv")
            self._cv_folder = Path(ckpt_path)
            self._members = fold_checkpoints(ckpt_path)
            ckpt_path = config.ckpt_path = str(self._members[0])
        if ckpt_path in ("last", "best"):
            if subcommand == "fit" and ckpt_path == "best":
                raise DataError("--ckpt_path best: fit resumes from 'last' or a checkpoint file")
            ckpt_path = config.ckpt_path = resolve_ckpt_path(ckpt_path, config.checkpoint.dirpath)
        if ckpt_path and ckpt_path not in ("hpc", "registry"):
            info = self._checkpoint = inspect_checkpoint(ckpt_path)
            if config.model.get("classes") is None:
                config.model.classes = info.classes
            if subcommand != "fit" and info.dirpath:
                # Outside fit the checkpoint callback only reloads the state of the run that
                # wrote the file; pointing it at that run's folder keeps Lightning from warning.
                config.checkpoint.dirpath = info.dirpath

    def _parse_ckpt_path(self) -> None:
        """Apply the checkpoint's model hyper-parameters once checked; decide the threshold.

        Lightning's own version hands them to the parser unchecked, and the parser imports any
        class path it meets: ``check_hyper_parameters`` runs first. The decision threshold then
        follows ``threshold_report.THRESHOLD_PRECEDENCE`` (the flag, a cv folder's tuned
        thresholds, the checkpoint's, the config's).
        """
        subcommand = self.config.get("subcommand")
        if not subcommand or self._checkpoint is None:
            return
        config = self.config[subcommand]
        typed = config.model.get("threshold")
        hparams = dict(self._checkpoint.hyper_parameters)
        check_hyper_parameters(config.ckpt_path, hparams)
        for key in ("_class_path", *LIGHTNING_KEYS):  # this package's model, built by Lightning
            hparams.pop(key, None)
        self.config = self._parse_checkpoint_hparams(config.ckpt_path, subcommand, hparams)
        self._threshold = decide_threshold(
            self._checkpoint.classes,
            typed,
            flag=typed if self._threshold_flag else None,
            cv_folder=self._cv_folder,
            checkpoint=hparams.get("threshold"),
        )
        if isinstance(self._threshold.value, float):
            self.config[subcommand].model.threshold = self._threshold.value

    def _parse_checkpoint_hparams(
        self, ckpt_path: str, subcommand: str, hparams: dict[str, Any]
    ) -> Any:
        """The config with ``hparams`` applied; a value the parser refuses names the checkpoint."""
        exit_on_error, self.parser.exit_on_error = self.parser.exit_on_error, False
        try:
            return self.parser.parse_object({subcommand: {"model": hparams}}, self.config)
        except ArgumentError as exc:
            refused = one_line_parse_error(str(exc)).removeprefix("--")
            raise DataError(f"{ckpt_path}: hyper-parameter {refused}") from None
        finally:
            self.parser.exit_on_error = exit_on_error

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer = config.trainer
        check_trainer_settings(trainer)
        check_checkpoint_settings(config.get("checkpoint"))
        check_backbone_setting(config.model)
        check_logger_packages(trainer.get("logger"))
        if trainer.get("precision") is None:
            trainer.precision = default_precision(trainer.get("accelerator", "auto"))
        if trainer.get("enable_progress_bar") is False:
            trainer.callbacks = drop_progress_bars(trainer.get("callbacks"))
        if self.subcommand == "predict":
            trainer.logger = False
        if config.get("ckpt_path"):
            # The weights come from the checkpoint: never fetch pretrained ones again.
            config.model.pretrained = False
        if self.subcommand == "fit" and not trainer.get("fast_dev_run"):
            dirpath = config.checkpoint.get("dirpath")
            if dirpath and trainer.get("enable_checkpointing") is not False:
                refuse_earlier_run(dirpath, config.get("ckpt_path"))

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The Trainer, with Lightning's refusals of its settings turned into one-line errors."""
        try:
            trainer = super().instantiate_trainer(**kwargs)
        except Exception as exc:
            refusal = trainer_refusal(exc)
            if refusal is None:
                raise
            raise refusal from None
        if type(trainer.strategy.checkpoint_io).__name__ == "TorchCheckpointIO":
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    def _check_inputs(self, stage: str) -> None:
        """The same checks the trainer's setup makes, run before it writes logs or checkpoints."""
        self.datamodule.check(stage)
        self.model.check_vocabulary(self.datamodule)

    def before_fit(self) -> None:
        self._check_inputs("fit")
        if self.config.fit.get("auto_batch_size"):
            Tuner(self.trainer).scale_batch_size(
                self.model,
                datamodule=self.datamodule,
                mode="power",
                max_trials=self.config.fit.auto_batch_size_max_trials,
            )

    def before_validate(self) -> None:
        self._check_inputs("validate")

    def before_test(self) -> None:
        self._check_inputs("test")

    def predict(self, model: PlantClassifier, datamodule: Any = None, **kwargs: Any) -> None:
        """Predict with the checkpoint, or the mean of a cv folder's folds, over the TTA views.

        The decision threshold is the one ``_parse_ckpt_path`` decided; the log says which.
        """
        members = self._members or [Path(kwargs["ckpt_path"])]
        choice = self._threshold or decide_threshold(
            list(model.classes or []),
            model.hparams["threshold"],
            flag=model.hparams["threshold"] if self._threshold_flag else None,
        )
        if self.trainer.is_global_zero:
            print(choice.log_line())
        predict_with_ensemble(
            self.trainer, datamodule, members, self.config.predict.tta, choice.value
        )

    def before_predict(self) -> None:
        refuse_partial_prediction(self.trainer)
        self._check_inputs("predict")


def run_cli(
    args: list[str] | None,
    description: str | None = None,
    callbacks: list[Callback] | None = None,
) -> PlantCLI:
    """Run ``fit|validate|test|predict`` with ``args`` (``None``: the process's arguments).

    ``callbacks`` are added to the configured ones (a job such as ``tune`` watching a ``fit``);
    the returned CLI holds the trainer, model and data module of the run.
    """
    return PlantCLI(
        PlantClassifier,
        PlantDataModule,
        args=args,
        save_config_callback=FitConfigSaver,
        save_config_kwargs={"overwrite": True},
        parser_class=OneLineErrorParser,
        parser_kwargs={"description": description},
        trainer_defaults={"callbacks": list(callbacks)} if callbacks else None,
    )
