"""A PyTorch Lightning baseline for the Kaggle competition {{ cookiecutter.competition }}.

The recipe you edit is the flat modules here (``layout labels images transforms data folds
backbones models metrics thresholds``); the machinery is in one subpackage per job (``cli``,
``workflows``, ``prep``, ``predict``, ``kaggle``, ``reports``, ``utils``)."""

__version__ = "0.1.0"
