"""`cvkit evaluate` writes only its own --out and refuses what cannot work with one `Error:` line."""

from __future__ import annotations


import pytest
from typer.testing import CliRunner

from tests.conftest import copy_run_with, leftovers, run, tree


def test_out_over_the_dataset_is_refused(trained, data):
    before = tree(data)
    result = run(CliRunner(), "evaluate", trained, "--out", data)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: --out {data} is {data}, which this command reads")
    result = run(CliRunner(), "evaluate", trained, "--out", data / "eval")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: --out {data / 'eval'} lies inside the dataset {data}")
    assert tree(data) == before


@pytest.mark.parametrize("option, value, message", [
    ("--top", "-1", "--top -1 must be 0 or more"),
    ("--batch-size", "0", "--batch-size 0 must be at least 1"),
])
def test_impossible_options_are_refused_and_write_nothing(trained, tmp_path, option, value, message):
    out = tmp_path / "ev"
    result = run(CliRunner(), "evaluate", trained, option, value, "--out", out)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {message}"), result.stderr
    assert not out.exists() and leftovers(tmp_path) == []


def test_edited_num_classes_in_model_json_is_refused(trained, tmp_path):
    run_dir = copy_run_with(trained, tmp_path / "run", num_classes=3)
    result = run(CliRunner(), "evaluate", run_dir, "--out", tmp_path / "ev")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {run_dir / 'model.json'}") and "num_classes" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "ev").exists()


def test_a_file_as_out_is_called_a_file(trained, tmp_path):
    out = tmp_path / "empty.txt"
    out.write_text("")
    result = run(CliRunner(), "evaluate", trained, "--out", out)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: --out {out} is a file, not a folder")
