"""Slow tier: the README's first command, `bash scripts/demo.sh`, works and learns."""

from __future__ import annotations

import re
import subprocess

import pytest

from conftest import ROOT, subprocess_env

pytestmark = pytest.mark.slow


def test_the_readme_main_command_trains_and_predicts():
    """Bake the defaults into demo/, train on the sample images, write submission.csv."""
    command = ["bash", "scripts/demo.sh"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=subprocess_env())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    scores = re.search(r"validation val/f1 ([\d.]+) .* vs ([\d.]+) for", result.stdout)
    assert scores, result.stdout[-2000:]
    learned, trivial = map(float, scores.groups())
    assert learned > trivial + 0.25
    submission = ROOT / "demo" / "kaggle-plant-pathology" / "submission.csv"
    rows = submission.read_text().splitlines()
    assert rows[0] == "image,labels" and len(rows) == 13
