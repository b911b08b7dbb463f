"""The docs a newcomer reads: README.md is a short front door whose quick start stays two commands,
every command has a page in docs/commands/ generated from its help and in sync with it, the file
contracts are documented, and bench/README.md is in sync with bench/results/."""

from __future__ import annotations

import importlib.util
import json
import re
import sys

import pytest
import typer.main

from cvkit.cli import app
from tests.conftest import REPO

README_MAX_LINES = 250


def _load(path, name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generate():
    return _load("docs/generate.py", "docs_generate")


@pytest.fixture(scope="module")
def report():
    return _load("bench/report.py", "bench_report")


def _command_paths() -> list[str]:
    """'train', 'retrieve', 'retrieve index', ...: every visible command of the app."""
    paths = []

    def walk(group, prefix: str) -> None:
        for name, command in group.commands.items():
            if not command.hidden:
                paths.append(f"{prefix}{name}")
                if hasattr(command, "commands"):
                    walk(command, f"{prefix}{name} ")

    walk(typer.main.get_command(app), "")
    return paths


def test_every_command_has_help_and_a_page_linked_from_the_docs():
    index = (REPO / "docs" / "commands" / "README.md").read_text()
    for path in _command_paths():
        page = REPO / "docs" / "commands" / f"{path.replace(' ', '-')}.md"
        assert page.is_file(), f"{page.relative_to(REPO)} is missing: run .venv/bin/python docs/generate.py"
        assert f"# `cvkit {path}`" in page.read_text(), path
        assert f"]({page.name})" in index, f"docs/commands/README.md does not link {page.name}"
    for info in app.registered_commands:
        assert (info.callback.__doc__ or "").strip(), f"cvkit {info.name} has no help text"


def test_command_pages_are_in_sync_with_the_cli(generate):
    stale = generate.stale(generate.pages())
    assert not stale, f"docs out of date: {', '.join(stale)}; regenerate with: {generate.REGENERATE}"


def test_command_pages_do_not_depend_on_the_terminal(generate, monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    narrow = generate.pages()
    monkeypatch.setenv("COLUMNS", "250")
    wide = generate.pages()
    assert narrow == wide
    for path, text in wide.items():
        assert "\x1b[" not in text, f"{path.name} holds terminal colour codes"
        assert not re.search(r"[╭╰│─]", text), f"{path.name} holds rich's box drawing"


def test_a_stale_page_is_reported_with_how_to_regenerate(generate, tmp_path, monkeypatch, capsys):
    pages = generate.pages()
    fake = {tmp_path / path.name: text for path, text in pages.items()}
    for path, text in fake.items():
        path.write_text(text)
    monkeypatch.setattr(generate, "COMMANDS", tmp_path)
    monkeypatch.setattr(generate, "REPO", tmp_path.parent)
    monkeypatch.setattr(generate, "pages", lambda: fake)
    assert generate.main(["--check"]) == 0
    (tmp_path / "train.md").write_text("edited by hand\n")
    (tmp_path / "gone.md").write_text("a command that no longer exists\n")
    assert generate.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "train.md" in err and "gone.md (no such command)" in err
    assert "docs/generate.py" in err and "make docs" in err


def test_every_command_is_in_the_readme_or_the_docs():
    readme = (REPO / "README.md").read_text()
    index = (REPO / "docs" / "commands" / "README.md").read_text()
    for info in app.registered_commands:
        assert f"cvkit {info.name}" in readme or f"`cvkit {info.name}`" in index, info.name
    for name in ("docs/commands/", "docs/tasks.md", "docs/files.md", "docs/gpus.md", "bench/README.md"):
        assert name in readme, f"README.md does not point at {name}"


def test_readme_is_a_short_front_door():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines: move the reference into docs/"


def test_quick_start_is_make_demo_and_make_test():
    readme = (REPO / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.split("```bash", 1)[1].split("```", 1)[0].splitlines()]
    assert [c for c in commands if c] == ["make demo", "make test"]


def test_the_readme_documents_only_tasks_that_exist():
    readme = (REPO / "README.md").read_text()
    pipelines = re.findall(r"^### (\w+)", readme.split("## A pipeline", 1)[1].split("\n## ", 1)[0], re.M)
    from cvkit.tasks import task_names

    assert pipelines[0] == "Classify" and set(pipelines) <= {name.capitalize() for name in task_names()}
    tasks = (REPO / "docs" / "tasks.md").read_text()
    assert re.findall(r"^## (\w+)", tasks, re.M) == task_names()


def test_every_file_in_the_contracts_is_documented():
    files = (REPO / "docs" / "files.md").read_text()
    for name in ("manifest.csv", "classes.json", "rejected.csv", "dataset.json", "stats.json", "mean_image.npy",
                 "augment.json", "model.safetensors", "model.json", "last.ckpt", "metrics.csv", "config.json"):
        assert f"`{name}`" in files, name
    assert '"format": 1' in files


def test_every_relative_link_in_the_docs_leads_to_a_file():
    pages = [REPO / "README.md", REPO / "bench" / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    for page in pages:
        if "notes" in page.relative_to(REPO).parts:  # notes are read from inside docs/commands/
            continue
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(REPO)} links to missing {target}"


def test_bench_readme_is_in_sync_with_the_results(report):
    assert (REPO / "bench" / "README.md").read_text() == report.render(), \
        f"bench/README.md is out of date; regenerate with: {report.REGENERATE}"


def test_bench_report_says_not_recorded_instead_of_guessing(report, tmp_path, monkeypatch):
    (tmp_path / "old.json").write_text(json.dumps({"benchmark": "old", "date": "2026-01-01 00:00:00"}))
    (tmp_path / "new.json").write_text(json.dumps({
        "benchmark": "new", "date": "2026-02-01 00:00:00", "commit": "abc1234", "command": "python bench/bench_new.py",
        "versions": {"torch": "2.9"}, "cpu": "Some CPU", "cores": 4}))
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    old, new = report.results_block("old")[-1], report.results_block("new")[-1]
    assert "commit: not recorded" in old and "command: not recorded" in old and "versions: not recorded" in old
    assert "CPU: not recorded" in old
    assert "commit: abc1234" in new and "`python bench/bench_new.py`" in new and "torch 2.9" in new
    assert "Some CPU, 4 cores" in new


def test_bench_results_record_commit_versions_cpu_and_command(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    sys.modules.pop("common", None)
    import common

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(sys, "argv", [str(REPO / "bench" / "bench_example.py"), "--seeds", "0,1"])
    data = json.loads(common.write_result("example", {"figure": 1.5}).read_text())
    assert set(common.METADATA_KEYS) <= set(data) and data["figure"] == 1.5
    assert data["command"] == "python bench/bench_example.py --seeds 0,1"
    assert "torch" in data["versions"] and "python" in data["versions"]
    with pytest.raises(ValueError, match="reserved"):
        common.write_result("example", {"commit": "mine"})


def test_benchmarks_need_nothing_outside_the_repository():
    assert (REPO / "bench" / "baseline_fmnist.py").is_file()
    for script in sorted((REPO / "bench").glob("*.py")):
        text = script.read_text()
        assert "shared" not in text.replace("shared by", ""), f"{script.name} reaches outside the repository"
        if script.name.startswith("bench_"):
            assert "write_result(" in text, f"{script.name} does not write its results with common.write_result"
