"""A PyTorch Lightning baseline for the Kaggle competition {{ cookiecutter.competition }}.

One job per module: ``cli`` (the ``{{ cookiecutter.package }}`` command: overview and dispatch),
``lightning_cli`` (fit / validate / test / predict), ``layout`` (the Kaggle file names and which
files are images), ``labels`` (``train.csv``, vocabulary, folds), ``data`` (transforms, dataset,
DataModule), ``images`` (fast, safe decoding), ``models`` (the LightningModule), ``prepare`` and
``cache`` (the pre-resized image cache) and ``sample_data`` (synthetic leaves for tests and demos).
"""

__version__ = "0.1.0"
