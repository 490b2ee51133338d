"""The LightningCLI of the package: fit / validate / test / predict. Whatever a user can get
wrong (options, Trainer settings, checkpoint, data) is one ``error:`` line before any output."""

from __future__ import annotations

import sys
import warnings
from argparse import ArgumentError
from pathlib import Path
from typing import Any, NoReturn, Optional, cast

from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from pytorch_lightning.plugins import TorchCheckpointIO
from pytorch_lightning.tuner import Tuner

from . import trainer_checks as checks
from .argtypes import refuse
from .checkpoints import AtomicCheckpointIO, EpochCheckpoint, refuse_earlier_run, resolve_ckpt_path
from .ema import ModelEMA, check_resume
from .. import metrics
from ..utils.errors import DataError
from ..utils.hardware import default_precision
from ..utils.constraints import OpenUnitInterval, PositiveInt
from ..data import PlantDataModule
from ..workflows.cv_files import fold_checkpoints, is_cv_folder
from ..predict.inference import Checkpoint, EnsembleClassifier, read_checkpoint, speed_line
from .loggers import check_logger_packages
from ..models import PlantClassifier
from ..utils.quiet import quiet_lightning
from ..predict.submission import SubmissionWriter
from ..predict.tta import TTA
from ..predict.blend import parse_blend, parse_sources
from ..predict.threshold_report import ThresholdChoice, ThresholdReport, decide_threshold

quiet_lightning()
# `cv` and `tune` run fits with their own arguments while sys.argv holds theirs: on purpose.
warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
# validate/test of a checkpoint of an EMA fit: its state_dict is already the average.
warnings.filterwarnings("ignore", message=r"Be aware that when using `ckpt_path`.*\['ModelEMA'\]")


class OneLineErrorParser(LightningArgumentParser):
    """A parser whose errors are one ``error:`` line naming the option, not the whole usage;
    ``command``, the subcommand it parses, lets ``add_arguments_to_parser`` add its own options."""

    def __init__(self, *args: Any, command: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.command = command

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        refuse(parser.prog, checks.one_line_parse_error(message))


class FitConfigSaver(SaveConfigCallback):
    """Save the resolved config beside a fit's logs (none if the logger has no local folder)."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit" and trainer.log_dir is not None:
            super().setup(trainer, pl_module, stage)


class PlantCLI(LightningCLI):
    """LightningCLI with checkpointing, a submission writer and input checks before each run."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Checkpoint and EMA options for every command (a fit config serves them all); batch-size
        search for fit; output for predict."""
        subcommand = getattr(parser, "command", None)
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
        ema = (
            "fit: keep an exponential moving average of the weights, updated after each optimizer"
            " step with this decay (0.999 forgets a step's weights over about 1/(1-0.999) = 1000"
            " steps); validation, checkpoints, cv, predict and package then use the average."
            " null: off. Other commands ignore it: a checkpoint holds the average"
        )
        parser.add_argument("--ema_decay", type=OpenUnitInterval | None, default=None, help=ema)
        if subcommand in ("predict", None):
            parser.add_lightning_class_args(SubmissionWriter, "submission")
            tta_help = "test-time augmentation: average over flipped views (flips: h, v and both)"
            parser.add_argument("--tta", type=TTA, default="none", help=tta_help)
            blend = (
                "blend weights of the cv folders in --ckpt_path A,B (e.g. 0.6,0.4; default"
                " equal): the weighted mean of their probabilities, at thresholds tuned on the"
                " same mean of their oof.csv"
            )
            parser.add_argument("--blend", type=Optional[str], default=None, help=blend)
        if subcommand in ("fit", None):
            search = "find the largest batch size that fits (Tuner.scale_batch_size) first"
            parser.add_argument("--auto_batch_size", type=bool, default=False, help=search)
            trials = "doublings the batch-size finder may try"
            parser.add_argument(
                "--auto_batch_size_max_trials", type=PositiveInt, default=6, help=trials
            )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, then read ``--ckpt_path`` once (``last`` / ``best`` and a cv folder become
        files first), check it and apply its hyper-parameters."""
        super().parse_arguments(parser, args)
        self.members: list[str | Path | Checkpoint] = []
        self.weights: list[float] | None = None
        self.blend: ThresholdReport | None = None
        self.checkpoint: Checkpoint | None = None
        self.threshold: ThresholdChoice | None = None
        given = list(sys.argv[1:] if args is None else args)
        self.threshold_flag = any(str(a).split("=")[0] == "--model.threshold" for a in given)
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        ckpt_path = config.get("ckpt_path")
        if subcommand == "predict" and not ckpt_path:
            raise DataError("predict needs a trained model: pass --ckpt_path CHECKPOINT")
        cv_folder = None
        blend = None
        if subcommand == "predict":
            blend = parse_blend("--ckpt_path", parse_sources(ckpt_path), config.get("blend"))
        if blend is not None:
            paths, self.weights = blend.checkpoints()
            self.members = list(paths)
            ckpt_path = config.ckpt_path = str(paths[0])
            if not self.threshold_flag:
                self.blend = blend.thresholds()
        elif subcommand == "predict" and Path(ckpt_path).is_dir():
            if not is_cv_folder(ckpt_path):
                raise DataError(f"--ckpt_path {ckpt_path}: a folder must be the output of cv")
            cv_folder, self.members = Path(ckpt_path), list(fold_checkpoints(ckpt_path))
            ckpt_path = config.ckpt_path = str(self.members[0])
        if ckpt_path in ("last", "best"):
            if subcommand == "fit" and ckpt_path == "best":
                raise DataError("--ckpt_path best: fit resumes from 'last' or a checkpoint file")
            ckpt_path = config.ckpt_path = resolve_ckpt_path(ckpt_path, config.checkpoint.dirpath)
        if ckpt_path and (subcommand == "predict" or ckpt_path not in ("hpc", "registry")):
            self.checkpoint = read_checkpoint(ckpt_path)
            if subcommand == "fit":
                check_resume(self.checkpoint, config.get("ema_decay"))
            self.members[:1] = [self.checkpoint]
            self.apply_checkpoint(subcommand, self.checkpoint, cv_folder)

    def apply_checkpoint(self, subcommand: str, checkpoint: Checkpoint, cv: Path | None) -> None:
        """Apply the checkpoint's checked model hyper-parameters, decide the threshold; outside fit,
        point the checkpoint callback at the folder of the run that wrote it (to reload state)."""
        typed = self.config[subcommand].model.get("threshold")
        hparams = checkpoint.hyper_parameters
        checks.check_hyper_parameters(checkpoint.path, hparams)
        for key in ("_class_path", *checks.LIGHTNING_KEYS):  # the model Lightning built
            hparams.pop(key, None)
        exit_on_error, self.parser.exit_on_error = self.parser.exit_on_error, False
        try:
            self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)
        except ArgumentError as exc:
            refused = checks.one_line_parse_error(str(exc)).removeprefix("--")
            raise DataError(f"{checkpoint.path}: hyper-parameter {refused}") from None
        finally:
            self.parser.exit_on_error = exit_on_error
        config = self.config[subcommand]
        if subcommand != "fit" and checkpoint.record.get("dirpath"):
            config.checkpoint.dirpath = checkpoint.record["dirpath"]
        flag = typed if self.threshold_flag else None
        self.threshold = decide_threshold(
            hparams["classes"],
            typed,
            flag=flag,
            cv_folder=cv,
            checkpoint=hparams.get("threshold"),
            blend=self.blend,
        )
        if isinstance(self.threshold.value, float):
            config.model.threshold = self.threshold.value

    def _parse_ckpt_path(self) -> None:
        """Nothing. Lightning 2.6's private hook (no public switch) would read the checkpoint again
        and hand its hyper-parameters to the parser unchecked: ``parse_arguments`` did both."""

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer = config.trainer
        checks.check_trainer_settings(trainer, config.get("checkpoint"))
        checks.check_backbone_setting(config.model)
        check_logger_packages(trainer.get("logger"))
        if trainer.get("precision") is None:
            trainer.precision = default_precision(trainer.get("accelerator", "auto"))
        if trainer.get("enable_progress_bar") is False:
            trainer.callbacks = checks.drop_progress_bars(trainer.get("callbacks"))
        if self.subcommand == "predict":
            trainer.logger = False
        if config.get("ckpt_path"):  # the weights come from it: never fetch pretrained ones again
            config.model.pretrained = False
        saves = trainer.get("enable_checkpointing") is not False and not trainer.get("fast_dev_run")
        if self.subcommand == "fit" and saves and config.checkpoint.get("dirpath"):
            refuse_earlier_run(config.checkpoint.dirpath, config.get("ckpt_path"))

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The Trainer (with the EMA callback of ``--ema_decay`` in a fit), with Lightning's
        refusals of its settings turned into one-line errors."""
        decay = self.config.fit.get("ema_decay") if self.subcommand == "fit" else None
        if decay is not None:
            configured = self._get(self.config_init, "trainer", default={}).get("callbacks") or []
            if not isinstance(configured, list):
                configured = [configured]
            kwargs["callbacks"] = [*configured, ModelEMA(decay)]
        try:
            trainer = super().instantiate_trainer(**kwargs)
        except checks.TRAINER_REFUSALS as exc:
            raise checks.trainer_refusal(exc) from None
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO(self.checkpoint)
        return trainer

    def check_inputs(self) -> None:
        """The same checks the trainer's setup makes, run before it writes logs or checkpoints."""
        self.datamodule.check(str(self.subcommand))
        self.model.check_data(self.datamodule)

    before_validate = before_test = check_inputs

    def before_fit(self) -> None:
        self.check_inputs()
        if self.config.fit.get("auto_batch_size"):
            trials = self.config.fit.auto_batch_size_max_trials
            Tuner(self.trainer).scale_batch_size(
                self.model, datamodule=self.datamodule, mode="power", max_trials=trials
            )

    def predict(self, model: PlantClassifier, datamodule: Any = None, **kwargs: Any) -> None:
        """Predict with the checkpoint, the mean of a cv folder's folds or a blend of cv folders,
        over the TTA views,
        at the threshold ``apply_checkpoint`` decided (the log says which)."""
        choice = cast(ThresholdChoice, self.threshold)  # predict always reads a checkpoint
        tta = self.config.predict.tta
        ensemble = EnsembleClassifier.from_checkpoints(
            self.members, tta, choice.value, self.weights
        )
        if self.trainer.is_global_zero:
            print(choice.log_line())
        self.trainer.predict(ensemble, datamodule=datamodule, return_predictions=False)
        if self.trainer.is_global_zero and ensemble.images:
            print(speed_line(ensemble))

    def before_predict(self) -> None:
        checks.refuse_partial_prediction(self.trainer)
        self.check_inputs()


def run_cli(
    args: list[str] | None, description: str | None = None, callbacks: list[Callback] | None = None
) -> PlantCLI:
    """Run ``fit|validate|test|predict`` with ``args`` (``None``: the process's arguments);
    ``callbacks`` are added to the configured ones (``tune`` watching a ``fit``)."""
    return PlantCLI(
        PlantClassifier,
        PlantDataModule,
        args=args,
        save_config_callback=FitConfigSaver,
        save_config_kwargs={"overwrite": True},
        parser_class=OneLineErrorParser,
        parser_kwargs=parser_kwargs(description=description),
        trainer_defaults={"callbacks": list(callbacks)} if callbacks else None,
    )


def parser_kwargs(**main: Any) -> dict[str, Any]:
    """``main`` for the main parser; each subcommand's parser is told its name."""
    return {**main, **{name: {"command": name} for name in LightningCLI.subcommands()}}
