"""The one error handler around every command: `Error: ...` and exit 2 for what the user can fix,
held-back warnings, the disk-full message, Ctrl-C as exit 130."""

from __future__ import annotations

import errno
import warnings

import pytest
from typer.testing import CliRunner

from tests.conftest import run, warnings_printed


def _patch_prepare(monkeypatch, effect):
    import cvkit.data

    def fake(*args, **kwargs):
        return effect()

    monkeypatch.setattr(cvkit.data, "prepare", fake)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EFBIG, errno.EDQUOT])
def test_no_room_is_a_one_line_disk_full_error(monkeypatch, tmp_path, code):
    def full():
        raise OSError(code, "No space left on device", str(tmp_path / "ds" / "manifest.csv"))

    _patch_prepare(monkeypatch, full)
    result = run(CliRunner(), "prepare", tmp_path, "--out", tmp_path / "ds")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: the disk is full (or a file-size limit was reached) while writing "
                                    f"{tmp_path / 'ds' / 'manifest.csv'}")
    assert len(result.stderr.strip().splitlines()) == 1


def test_warnings_are_held_back_when_the_command_fails(monkeypatch, tmp_path):
    from cvkit.errors import SourceError

    def warn_then_fail():
        warnings.warn("TypedStorage is deprecated", UserWarning)
        raise SourceError("the source is empty")

    _patch_prepare(monkeypatch, warn_then_fail)
    with warnings_printed():
        result = run(CliRunner(), "prepare", tmp_path, "--out", tmp_path / "ds")
    assert result.exit_code == 2
    assert result.stderr == "Error: the source is empty\n"


def test_ctrl_c_exits_130(monkeypatch, tmp_path):
    def interrupt():
        raise KeyboardInterrupt

    _patch_prepare(monkeypatch, interrupt)
    result = run(CliRunner(), "prepare", tmp_path, "--out", tmp_path / "ds")
    assert result.exit_code == 130
    assert result.stderr.startswith("Interrupted")


def test_a_bug_is_still_an_internal_error(monkeypatch, tmp_path):
    def bug():
        raise ZeroDivisionError("division by zero")

    _patch_prepare(monkeypatch, bug)
    result = run(CliRunner(), "prepare", tmp_path, "--out", tmp_path / "ds")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: internal error, ZeroDivisionError: division by zero (rerun with --debug")
