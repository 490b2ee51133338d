"""A PyTorch Lightning baseline for the Kaggle competition {{ cookiecutter.competition }}.

Modules: ``data`` (CSV, split, datasets, datamodule), ``images`` (fast decoding), ``models``
(backbones + LightningModule), ``metrics`` (competition metric, threshold decoding), ``cli``
(the ``{{ cookiecutter.package }}`` command) and ``sample_data`` (synthetic leaves for tests and demos).
"""

__version__ = "0.1.0"
