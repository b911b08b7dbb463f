"""`cvkit normalize` refuses what cannot work with one `Error:` line naming the fix."""

from __future__ import annotations

from typer.testing import CliRunner

from tests.conftest import run


def test_a_file_is_not_a_dataset_directory(tmp_path):
    result = run(CliRunner(), "normalize", "/etc/passwd")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: /etc/passwd is a file, not a dataset directory"), result.stderr
    assert "JSON" not in result.stderr and "Errno" not in result.stderr


def test_negative_workers_is_refused(data):
    result = run(CliRunner(), "normalize", data, "--workers", "-3")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --workers -3 must be at least 1 (or left out: one per core)"), result.stderr
