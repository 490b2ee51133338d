"""The notebooks: committed without outputs, and every figure drawn on the sample set.

The slow tests run each notebook in a real Jupyter kernel (nbclient), from the notebooks'
folder, the way a user opens it and runs all cells.
"""

import base64
import os
import re
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from figure_checks import assert_drawn
from forged_images import jpeg_claiming

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"
PRE_COMMIT = Path(__file__).parents[1] / ".pre-commit-config.yaml"
NAMES = ["01-explore.ipynb", "02-results.ipynb"]


def _hook_pattern() -> re.Pattern:
    """The regular expression of the pre-commit hook that refuses notebook outputs."""
    config = yaml.safe_load(PRE_COMMIT.read_text())
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    (hook,) = [hook for hook in hooks if hook["id"] == "notebooks-without-outputs"]
    assert hook["language"] == "pygrep" and "--multiline" in hook["args"]
    return re.compile(hook["entry"], re.MULTILINE)


def _execute(name: str) -> tuple[nbformat.NotebookNode, float]:
    """Run every cell of the notebook ``name`` in a fresh kernel; the executed copy, seconds."""
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    started = time.monotonic()
    client.execute()
    return notebook, time.monotonic() - started


def _check_outputs(notebook: nbformat.NotebookNode) -> None:
    """No error output, and a drawn (not blank) image from every cell that draws a figure."""
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        errors = [out for out in cell.outputs if out.output_type == "error"]
        assert not errors, f"{cell.source!r} failed: {errors[0].ename}: {errors[0].evalue}"
        if cell.source.startswith("plots."):
            images = [out for out in cell.outputs if "image/png" in out.get("data", {})]
            assert len(images) == 1, f"{cell.source!r} showed no figure"
            assert_drawn(base64.b64decode(images[0].data["image/png"]), cell.source)


@pytest.mark.parametrize("name", NAMES)
def test_notebooks_are_committed_without_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)
    assert not _hook_pattern().search((NOTEBOOKS / name).read_text())


def test_the_pre_commit_hook_refuses_a_notebook_with_outputs(tmp_path):
    notebook = nbformat.read(NOTEBOOKS / NAMES[0], as_version=4)
    cell = next(cell for cell in notebook.cells if cell.cell_type == "code")
    cell.outputs = [nbformat.v4.new_output("stream", text="hello\n")]
    nbformat.write(notebook, tmp_path / "out.ipynb")
    assert _hook_pattern().search((tmp_path / "out.ipynb").read_text())
    cell.outputs, cell.execution_count = [], 3
    nbformat.write(notebook, tmp_path / "count.ipynb")
    assert _hook_pattern().search((tmp_path / "count.ipynb").read_text())


@pytest.mark.slow
def test_explore_notebook_draws_every_figure_of_the_sample_set(monkeypatch):
    monkeypatch.delenv("DATA_DIR", raising=False)  # the default: the bundled sample set
    notebook, seconds = _execute("01-explore.ipynb")
    _check_outputs(notebook)
    print(f"01-explore.ipynb ran in {seconds:.1f} s")


@pytest.mark.slow
def test_explore_notebook_shows_a_decompression_bomb_as_one_line_naming_it(data_copy, monkeypatch):
    name = (data_copy / "train.csv").read_text().splitlines()[-1].split(",")[0]
    jpeg_claiming(data_copy / "train_images" / name, 60_000, 60_000)
    monkeypatch.setenv("DATA_DIR", os.fspath(data_copy))
    notebook, _ = _execute("01-explore.ipynb")
    (cell,) = [cell for cell in notebook.cells if cell.source.startswith("plots.image_sizes")]
    (error,) = [out for out in cell.outputs if out.output_type == "error"]
    assert error.ename == "DataError" and f"train_images/{name}: " in error.evalue
    assert len(error.traceback) == 1, error.traceback


@pytest.mark.slow
def test_results_notebook_draws_every_figure_of_a_run(trained, sample_dir, monkeypatch):
    monkeypatch.setenv("RUN_DIR", os.fspath(trained.parent.parent))
    monkeypatch.setenv("DATA_DIR", os.fspath(sample_dir))
    notebook, seconds = _execute("02-results.ipynb")
    _check_outputs(notebook)
    print(f"02-results.ipynb ran in {seconds:.1f} s")
