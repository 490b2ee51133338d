"""Bad answers stop the bake with one clear ``ERROR:`` line per problem and leave nothing behind."""

from __future__ import annotations

import pytest

from conftest import run_cookiecutter

BAD_ANSWERS = [
    # (answer, the field the ERROR line must name, a word of the reason)
    ("package=Challenge", "package", "not a lowercase Python identifier"),
    ("package=1st_place", "package", "not a lowercase Python identifier"),
    ("package=leaf-doctor", "package", "not a lowercase Python identifier"),
    ("package=café", "package", "not a lowercase Python identifier"),
    ("package=", "package", "not a lowercase Python identifier"),
    ("package=class", "package", "keyword"),
    ("package=match", "package", "keyword"),
    ("package=json", "package", "standard-library"),
    ("package=os", "package", "standard-library"),
    ("package=torch", "package", "shadows a dependency"),
    ("package=torchvision", "package", "shadows a dependency"),
    ("package=pytorch_lightning", "package", "shadows a dependency"),
    ("package=lightning", "package", "shadows a dependency"),
    ("package=tests", "package", "shadows a dependency or the tests folder"),
    ("project=", "project", "empty"),
    ("project=a/b", "project", "path separator"),
    ("project=..", "project", "starts with '.'"),
    ("project=../escape", "project", "path separator"),
    ("project=a..b", "project", "'..'"),
    ("project=.", "project", "starts with '.'"),
    ("project=-rf", "project", "starts with '-'"),
    ("project=.hidden", "project", "starts with '.'"),
    ("project=/tmp/elsewhere", "project", "path separator"),
    ("project=back\\slash", "project", "path separator"),
    ("project=has space", "project", "characters GitHub refuses"),
    ("project=semi;colon", "project", "characters GitHub refuses"),
    ("project=" + "x" * 101, "project", "longer than GitHub's 100"),
    ("email=nobody", "email", "not an e-mail address"),
    ("email=a@b", "email", "not an e-mail address"),
    ("email=a b@example.com", "email", "not an e-mail address"),
    ("competition=Plant Pathology", "competition", "not a Kaggle slug"),
    ("github_user=-leading", "github_user", "not a GitHub name"),
    ("github_user=a--b", "github_user", "not a GitHub name"),
    ("author=", "author", "empty"),
    ("author=two\nlines", "author", "line break"),
    ("description=tab\there", "description", "control character"),
    ("description=" + "d" * 351, "description", "351 characters"),
]


@pytest.mark.parametrize(
    ("answer", "field", "reason"), BAD_ANSWERS, ids=[a[:30] for a, _, _ in BAD_ANSWERS]
)
def test_bad_answer_fails_cleanly(tmp_path, answer, field, reason):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "keep.txt").write_text("precious")
    result = run_cookiecutter(out, answer)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith(f"ERROR: {field} ")]
    assert len(errors) == 1, result.stderr
    assert reason in errors[0]
    assert "allowed" in errors[0] or "use " in errors[0]
    assert list(out.iterdir()) == [], "the failed bake left files behind"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt", "out"]


def test_several_problems_are_all_reported(tmp_path):
    result = run_cookiecutter(tmp_path, "package=Bad", "email=x", "project=a/b")
    fields = [line.split()[1] for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    assert {"project", "package", "email"} <= set(fields)
    assert list(tmp_path.iterdir()) == []


def test_unknown_choice_is_refused(tmp_path):
    result = run_cookiecutter(tmp_path, "license=GPL-3.0")
    assert result.returncode != 0
    assert "GPL-3.0" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "answer", ["package=leaf_doctor", "project=Leaf.Doctor_2", "email=a.b+c@d.co.uk"]
)
def test_good_unusual_answers_pass(tmp_path, answer):
    result = run_cookiecutter(tmp_path, answer)
    assert result.returncode == 0, result.stderr
    assert len(list(tmp_path.iterdir())) == 1
