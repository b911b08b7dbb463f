"""README.md documents every command, and the quick start stays two commands."""

from __future__ import annotations

from cvkit.cli import app
from tests.conftest import REPO


def test_every_command_is_in_the_readme():
    readme = (REPO / "README.md").read_text()
    for command in app.registered_commands:
        assert f"### `cvkit {command.name}" in readme, command.name


def test_quick_start_is_make_demo_and_make_test():
    readme = (REPO / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.split("```bash", 1)[1].split("```", 1)[0].splitlines()]
    assert [c for c in commands if c] == ["make demo", "make test"]


def test_every_json_file_in_the_contracts_is_documented():
    readme = (REPO / "README.md").read_text()
    for name in ("manifest.csv", "classes.json", "rejected.csv", "dataset.json", "stats.json", "mean_image.npy"):
        assert f"`{name}`" in readme, name
