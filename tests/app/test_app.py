"""The CLI as a whole: help, version, global options, the error contract, import cost."""

from __future__ import annotations

import subprocess
import sys
import time

from cvkit import __version__
from cvkit.cli import app
from tests.conftest import SAMPLE, run

COMMANDS = sorted(c.name for c in app.registered_commands)


def test_version(runner):
    result = run(runner, "--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"cvkit {__version__}"


def test_every_command_has_help_with_an_example(runner):
    assert {"prepare", "normalize"} <= set(COMMANDS)
    for name in COMMANDS:
        result = run(runner, name, "--help")
        assert result.exit_code == 0, name
        assert "Example: cvkit " + name in result.stdout.replace("\n", " "), name


def test_importing_the_cli_leaves_torch_and_numpy_out():
    code = "import sys, cvkit.cli; bad = [m for m in ('torch', 'timm', 'torchvision', 'numpy', 'pandas') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_help_is_fast():
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cvkit", "prepare", "--help"], capture_output=True, check=True)
    assert time.perf_counter() - start < 2.0  # about 0.35 s here; generous for a loaded CI machine


def test_python_dash_m_runs(tmp_path):
    out = subprocess.run([sys.executable, "-m", "cvkit", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("cvkit ")


def test_library_error_is_one_line_exit_2_no_traceback(runner, tmp_path):
    result = run(runner, "prepare", tmp_path / "nope", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: SOURCE ")
    assert "does not exist" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "out").exists()


def test_debug_shows_the_exception(runner, tmp_path):
    from cvkit.errors import SourceError

    try:
        runner.invoke(app, ["--debug", "prepare", str(tmp_path / "nope"), "--out", str(tmp_path / "o")],
                      catch_exceptions=False)
    except SourceError as e:
        assert "does not exist" in str(e)
    else:
        raise AssertionError("--debug should let the exception through")


def test_bad_option_value_is_exit_2(runner, tmp_path):
    for args, needle in ((["--size", "abc"], "--size 'abc'"), (["--val", "0.7", "--test", "0.5"], "nothing to train on"),
                         (["--channels", "2"], "--channels 2"), (["--resize", "zoom"], "--resize zoom")):
        result = run(runner, "prepare", SAMPLE / "fashion", "--out", tmp_path / "o", *args)
        assert result.exit_code == 2, args
        assert needle in result.stderr, (args, result.stderr)
        assert not (tmp_path / "o").exists()


def test_unknown_device_is_a_usage_error(runner):
    result = run(runner, "--device", "tpu", "prepare", "--help")
    assert result.exit_code == 2
    assert "tpu" in result.stderr


def test_quiet_prints_only_the_result(runner, tmp_path):
    result = run(runner, "--quiet", "prepare", SAMPLE / "fashion", "--out", tmp_path / "d")
    assert result.exit_code == 0
    assert result.stdout.strip() == str(tmp_path / "d")
    assert result.stderr == ""


def test_refuses_to_overwrite_without_force(runner, tmp_path):
    out = tmp_path / "d"
    assert run(runner, "-q", "prepare", SAMPLE / "fashion", "--out", out).exit_code == 0
    marker = (out / "manifest.csv").read_bytes()
    result = run(runner, "prepare", SAMPLE / "fashion", "--out", out)
    assert result.exit_code == 2
    assert "--force" in result.stderr
    assert (out / "manifest.csv").read_bytes() == marker
    assert run(runner, "-q", "prepare", SAMPLE / "fashion", "--out", out, "--force", "--val", "0.3").exit_code == 0
    assert (out / "manifest.csv").read_bytes() != marker


def test_every_module_imports_on_its_own():
    """Each module imported first in a fresh interpreter, as each command does: no import cycles."""
    import pkgutil

    import cvkit

    names = [m.name for m in pkgutil.walk_packages(cvkit.__path__, "cvkit.") if not m.name.endswith("__main__")]
    # One interpreter; before each module, every cvkit module is forgotten (torch and friends stay
    # loaded), so each is imported first, as a command's body does.
    code = ("import importlib, sys\nfor n in sys.argv[1:]:\n"
            "    for m in [m for m in sys.modules if m == 'cvkit' or m.startswith('cvkit.')]:\n"
            "        del sys.modules[m]\n"
            "    importlib.import_module(n)\n")
    subprocess.run([sys.executable, "-c", code, *names], check=True, capture_output=True)
