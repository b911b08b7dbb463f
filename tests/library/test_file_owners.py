"""One owner per file format (DESIGN.md): outside ``cvkit/files/`` no module names a contract file
(``model.json``, ``stats.json``, ...) as a string; it asks the owner (``ModelInfo.exists(run)``,
``ModelInfo.copy(run, folder)``, ...). The names that remain elsewhere are listed below with why."""

from __future__ import annotations

import ast

from tests.conftest import REPO

CONTRACT_FILES = {"model.json", "stats.json", "config.json", "metrics.csv", "augment.json", "dataset.json",
                  "classes.json", "manifest.csv", "rejected.csv", "model.safetensors", "last.ckpt"}

# (module, file name): why the module may spell the name.
ALLOWED = {
    ("cvkit/export/command.py", "model.safetensors"): "the export's own output file, in the export folder",
    ("cvkit/models/weights.py", "model.safetensors"): "a file name on the Hugging Face hub",
    ("cvkit/cli/augment.py", "augment.json"): "a path shown in a summary",
    ("cvkit/cli/prepare.py", "rejected.csv"): "a path shown in a summary",
    ("cvkit/cli/train.py", "model.safetensors"): "a path shown in an error message",
    ("cvkit/runtime/run.py", "model.json"): "a path shown in an error message",
    ("cvkit/train/fit.py", "model.safetensors"): "a path shown in an error message",
}


def named_files() -> set[tuple[str, str, int]]:
    found = set()
    for path in sorted((REPO / "cvkit").rglob("*.py")):
        module = path.relative_to(REPO).as_posix()
        if module.startswith("cvkit/files/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in CONTRACT_FILES:
                found.add((module, node.value, node.lineno))
    return found


def test_only_cvkit_files_names_the_contract_files():
    stray = sorted(f"{module}:{line} names {name}" for module, name, line in named_files()
                   if (module, name) not in ALLOWED)
    assert not stray, "open these through their owner in cvkit/files/ (or list why in ALLOWED): " + "; ".join(stray)


def test_model_info_helpers(tmp_path):
    from cvkit.files.run import ModelInfo

    info = ModelInfo(arch="smallcnn", num_classes=2, num_outputs=2, in_chans=1, input_size=[8, 8],
                     classes=["a", "b"], loss="ce", mean=[0.5], std=[0.25])
    for run in (tmp_path / "runs" / "one", tmp_path / "runs" / "cv" / "final", tmp_path / "runs" / "a" / "b" / "c" / "d"):
        run.mkdir(parents=True)
        info.write(run)
    (tmp_path / "runs" / "empty").mkdir()
    assert ModelInfo.exists(tmp_path / "runs" / "one") and not ModelInfo.exists(tmp_path / "runs" / "empty")
    found = sorted(ModelInfo.runs_under(tmp_path / "runs", 3))
    assert found == [tmp_path / "runs" / "cv" / "final", tmp_path / "runs" / "one"]  # four deep: not searched
    assert ModelInfo.written_at(found[0]) == (found[0] / "model.json").stat().st_mtime
    (tmp_path / "export").mkdir()
    ModelInfo.copy(found[1], tmp_path / "export")
    assert (tmp_path / "export" / "model.json").read_bytes() == (found[1] / "model.json").read_bytes()
    assert ModelInfo.read(tmp_path / "export") == info
