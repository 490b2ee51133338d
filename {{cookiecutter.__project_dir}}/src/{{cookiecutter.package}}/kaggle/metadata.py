"""The Kaggle ids and metadata files of a bundle: two private datasets and a notebook.

``dataset-metadata.json`` is what ``kaggle datasets create|version -p DIR`` reads and
``kernel-metadata.json`` what ``kaggle kernels push -p DIR`` reads. The ids are
``USER/<project>-code``, ``USER/<project>-weights`` and ``USER/<project>-submission``; the
notebook lists the competition and both datasets as its inputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..utils.errors import DataError
from .notebook import NOTEBOOK

PROJECT = "{{ cookiecutter.project }}"
COMPETITION = "{{ cookiecutter.competition }}"
SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{1,48}[a-z0-9])")
USER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,48}[A-Za-z0-9])?")


@dataclass(frozen=True)
class Ids:
    """The Kaggle ids of the bundle: ``user/slug`` of both datasets and of the notebook."""

    user: str
    competition: str

    @property
    def base(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", PROJECT.lower()).strip("-")[:38].strip("-")

    @property
    def code(self) -> str:
        return f"{self.user}/{self.base}-code"

    @property
    def weights(self) -> str:
        return f"{self.user}/{self.base}-weights"

    @property
    def kernel(self) -> str:
        return f"{self.user}/{self.base}-submission"


def check_ids(user: str, competition: str) -> Ids:
    """``Ids`` of a valid Kaggle user name and competition slug, else ``DataError`` naming it."""
    if not USER.fullmatch(user):
        raise DataError(f"--user {user!r}: not a Kaggle user name (letters, digits, - and _)")
    if not SLUG.fullmatch(competition):
        raise DataError(
            f"--competition {competition!r}: not a Kaggle slug (3-50 lowercase letters, digits"
            " and -, as in kaggle.com/competitions/<slug>)"
        )
    return Ids(user, competition)


def dataset_metadata(dataset_id: str, what: str) -> dict[str, Any]:
    """``dataset-metadata.json`` of a private dataset."""
    return {
        "title": f"{dataset_id.split('/')[1]}"[:50],
        "id": dataset_id,
        "licenses": [{"name": "other"}],
        "subtitle": f"{what} for the {PROJECT} submission notebook"[:80],
    }


def kernel_metadata(ids: Ids) -> dict[str, Any]:
    """``kernel-metadata.json``: a private GPU notebook, internet off, reading both datasets."""
    return {
        "id": ids.kernel,
        "title": ids.kernel.split("/")[1],
        "code_file": NOTEBOOK,
        "language": "python",
        "kernel_type": "notebook",
        "is_private": True,
        "enable_gpu": True,
        "enable_internet": False,
        "competition_sources": [ids.competition],
        "dataset_sources": [ids.code, ids.weights],
        "kernel_sources": [],
        "model_sources": [],
    }
