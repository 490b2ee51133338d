"""Every wrong option value is one ``error:`` line, exit code 2, and nothing written.

``RULES`` writes out the documented range of each option (``--help``, README) as literal values
just outside it: a bound loosened in the code fails its row. The numeric options are also found
by walking the CLI's own parser, and bad values derived from the constraints their signatures
declare: an option added later is covered without editing this file, and an option that declares
no constraint fails ``test_every_numeric_option_...``.
"""

import operator
import types
import typing
from pathlib import Path

import pytest
import torch

from {{ cookiecutter.package }}.cli import main
from {{ cookiecutter.package }}.data import PlantDataModule
from {{ cookiecutter.package }}.cli.lightning import PlantCLI
from {{ cookiecutter.package }}.models import PlantClassifier

from helpers import QUICK_EPOCH, SAMPLE_DIR, cli_args

# A value beyond each kind of bound: (operator, bound) -> a value that breaks it.
BREAK = {
    operator.gt: lambda bound: bound,
    operator.ge: lambda bound: bound - 1,
    operator.lt: lambda bound: bound,
    operator.le: lambda bound: bound + 1,
}


def _numeric(hint: object) -> tuple[type | None, bool]:
    """The number type inside ``hint`` (Optional / list unwrapped) and whether it is a list."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        return _numeric(args[0])
    if typing.get_origin(hint) is list and len(args) == 1:
        return _numeric(args[0])[0], True
    if isinstance(hint, type) and issubclass(hint, (int, float)) and not issubclass(hint, bool):
        return hint, False
    return None, False


def numeric_options() -> dict[str, tuple[type, bool]]:
    """``model.*`` and ``data.*`` options of the CLI's parser whose values are numbers."""
    cli = PlantCLI(
        PlantClassifier,
        PlantDataModule,
        args=cli_args(SAMPLE_DIR, "--trainer.logger", "false"),
        run=False,
    )
    options = {}
    for action in cli.parser._actions:
        if action.dest.startswith(("model.", "data.")):
            number, is_list = _numeric(getattr(action, "_typehint", None))
            if number is not None:
                options[action.dest] = (number, is_list)
    return options


OPTIONS = numeric_options()


def bad_values(number: type, is_list: bool) -> list[str]:
    """A wrong type and one value beyond each declared bound."""
    values = ["abc"] + [str(BREAK[op](bound)) for op, bound in number._restrictions]
    return [f"[1, {value}]" if is_list else value for value in values]


CASES = [
    pytest.param(dest, value, id=f"{dest}={value}")
    for dest, (number, is_list) in sorted(OPTIONS.items())
    for value in bad_values(number, is_list)
]


def assert_refused(capsys, work: Path, status: int, *expected: str) -> str:
    assert status == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert all(text in lines[0] for text in expected), lines[0]
    assert sorted(p.name for p in work.iterdir()) == []
    return lines[0]


def test_the_walk_finds_the_options_users_get_wrong():
    expected = {"model.lr", "model.dropout", "model.threshold", "model.weight_decay"}
    expected |= {"model.pos_weight", "data.batch_size", "data.image_size", "data.num_workers"}
    expected |= {"data.val_fraction", "data.fold", "data.seed", "model.mixup_p", "model.asl_clip"}
    assert expected <= set(OPTIONS)


def test_every_numeric_option_declares_its_constraint():
    unconstrained = [dest for dest, (number, _) in OPTIONS.items() if number in (int, float)]
    assert not unconstrained, f"declare a range for {unconstrained} (see constraints.py)"


@pytest.mark.parametrize(("dest", "value"), CASES)
def test_a_bad_numeric_value_is_one_line(sample_dir, in_tmp, capsys, dest, value):
    status = main(["fit", *cli_args(sample_dir, f"--{dest}", value)])
    assert_refused(capsys, in_tmp, status, f"--{dest}")


# (flag, value, text of the one error line): values just outside each documented range.
RULES = [
    ("--model.threshold", "1.01", "--model.threshold 1.01"),
    ("--model.threshold", "-0.01", "--model.threshold -0.01"),
    ("--model.dropout", "1.0", "--model.dropout 1.0"),
    ("--model.dropout", "1.2", "--model.dropout 1.2"),
    ("--model.dropout", "-0.1", "--model.dropout -0.1"),
    ("--model.lr", "0", "--model.lr 0"),
    ("--model.lr", "-1", "--model.lr -1"),
    ("--model.lr", "nan", "--model.lr nan"),
    ("--model.lr", "inf", "--model.lr inf"),
    ("--model.weight_decay", "-1", "--model.weight_decay -1"),
    ("--model.weight_decay", "inf", "--model.weight_decay inf"),
    ("--model.pos_weight", "[1, 1, 1, 1, 1, 0]", "--model.pos_weight 0"),
    ("--model.pos_weight", "[1, 1, 1, 1, 1, -2]", "--model.pos_weight -2"),
    ("--model.pos_weight", "[1, 1, 1, 1, 1, inf]", "--model.pos_weight inf"),
    ("--model.mixup_p", "-0.1", "--model.mixup_p -0.1"),
    ("--model.cutmix_p", "1.5", "--model.cutmix_p 1.5"),
    ("--model.mixup_alpha", "0", "--model.mixup_alpha 0"),
    ("--model.cutmix_alpha", "-1", "--model.cutmix_alpha -1"),
    ("--model.asl_clip", "1", "--model.asl_clip 1"),
    ("--model.asl_clip", "-0.05", "--model.asl_clip -0.05"),
    ("--model.asl_gamma_neg", "-1", "--model.asl_gamma_neg -1"),
    ("--model.focal_gamma", "inf", "--model.focal_gamma inf"),
    ("--model.label_smoothing", "1", "--model.label_smoothing 1"),
    ("--model.warmup_epochs", "-1", "--model.warmup_epochs -1"),
    ("--model.backbone_lr_scale", "0", "--model.backbone_lr_scale 0"),
    ("--model.loss", "bce2", "--model.loss: Expected a typing.Literal['bce', 'focal', 'asl']"),
    ("--data.val_fraction", "0", "--data.val_fraction 0"),
    ("--data.val_fraction", "0.51", "--data.val_fraction 0.51"),
    ("--data.val_fraction", "0.6", "--data.val_fraction 0.6"),
    ("--data.image_size", "15", "--data.image_size 15"),
    ("--data.image_size", "4097", "--data.image_size 4097"),
    ("--data.batch_size", "0", "--data.batch_size 0"),
    ("--data.seed", "-1", "--data.seed -1"),
    ("--data.seed", str(2**32), f"--data.seed {2**32}"),
    ("--data.num_workers", "-1", "--data.num_workers -1"),
    ("--data.fold", "-1", "--data.fold -1"),
    ("--data.fold", "5", "fold=5 must be in 0..4"),
    ("--trainer.max_epochs", "0", "--trainer.max_epochs 0"),
    ("--trainer.accumulate_grad_batches", "0", "--trainer.accumulate_grad_batches 0"),
    ("--checkpoint.save_top_k", "-2", "--checkpoint.save_top_k -2"),
    ("--auto_batch_size_max_trials", "0", "--auto_batch_size_max_trials 0"),
]


@pytest.mark.parametrize(("flag", "value", "expected"), RULES, ids=lambda v: str(v))
def test_a_value_outside_the_documented_range_is_one_line(
    sample_dir, in_tmp, capsys, flag, value, expected
):
    status = main(["fit", *cli_args(sample_dir, *QUICK_EPOCH, flag, value)])
    assert_refused(capsys, in_tmp, status, expected)


def test_help_shows_the_constraints(capsys):
    assert main(["fit", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for text in (
        "PositiveFinite",
        "HalfOpenUnitInterval",
        "ClosedUnitInterval",
        "PositiveInt",
        "Seed",
    ):
        assert text in out


TRAINER_CASES = [
    (["--trainer.precision", "16-mixed"], "--trainer.precision 16-mixed: float16"),
    (["--trainer.precision", "64-true"], "--trainer.precision 64-true"),
    (["--trainer.devices", "0"], "--trainer.devices"),
    (["--trainer.devices", "[0, 1]"], "--trainer.devices"),
    (["--trainer.strategy", "nonsense"], "--trainer.strategy"),
    (["--trainer.strategy", "deepspeed"], "--trainer.strategy"),
    (["--trainer.num_nodes", "0"], "--trainer.num_nodes"),
    (["--trainer.max_epochs", "-5"], "--trainer.max_epochs"),
    (["--trainer.accelerator", "tpu"], "--trainer.accelerator"),
    (["--model.backbone", "resnet_999"], "backbone 'resnet_999'"),
    (["--data.fold", "7"], "fold=7 must be in 0..4"),
    (
        ["--model.mixup_p", "0.6", "--model.cutmix_p", "0.5"],
        "mixup_p=0.6 + cutmix_p=0.5 is above 1",
    ),
    (["--unknown_flag", "3"], "unrecognized arguments: --unknown_flag"),
]


@pytest.mark.parametrize(("flags", "expected"), TRAINER_CASES, ids=lambda v: str(v))
def test_settings_lightning_would_refuse_are_one_line(sample_dir, in_tmp, capsys, flags, expected):
    status = main(["fit", *cli_args(sample_dir, *flags)])
    assert_refused(capsys, in_tmp, status, expected)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_a_gpu_on_a_machine_without_one(sample_dir, in_tmp, capsys):
    status = main(["fit", *cli_args(sample_dir, "--trainer.accelerator", "gpu")])
    line = assert_refused(capsys, in_tmp, status, "--trainer.accelerator gpu: no CUDA GPU")
    assert "use --trainer.accelerator cpu" in line


@pytest.mark.slow
def test_the_progress_bar_can_be_switched_off(sample_dir, in_tmp, capsys):
    args = ["--trainer.enable_progress_bar", "false", "--trainer.max_epochs", "1"]
    args += ["--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1"]
    assert main(["fit", *cli_args(sample_dir, *args)]) == 0
    assert "━" not in capsys.readouterr().out
    assert (in_tmp / "checkpoints" / "last.ckpt").is_file()


def test_python_callers_get_the_same_rules():
    with pytest.raises(ValueError, match=r"lr=-1: -1 does not conform"):
        PlantClassifier(lr=-1)
    with pytest.raises(ValueError, match=r"batch_size=0"):
        PlantDataModule(batch_size=0)
    hparams = PlantClassifier(lr=0.01, dropout=0.5, classes=["a", "b"]).hparams
    assert type(hparams.lr) is float and type(hparams.dropout) is float  # checkpoint-safe


@pytest.mark.parametrize(
    ("subcommand", "flag", "value"),
    [
        ("validate", "--auto_batch_size", "true"),
        ("predict", "--auto_batch_size_max_trials", "3"),
        ("fit", "--submission.path", "out.csv"),
        ("test", "--submission.probabilities_path", "probs.csv"),
    ],
)
def test_an_option_of_another_command_is_refused(
    sample_dir, in_tmp, capsys, subcommand, flag, value
):
    status = main([subcommand, *cli_args(sample_dir, flag, value)])
    assert_refused(capsys, in_tmp, status, f"unrecognized arguments: {flag}")
