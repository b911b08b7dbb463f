"""The task layer: one module per task behind one interface; nothing outside it (and the CLI) names a task."""

from __future__ import annotations

import ast
import json

import numpy as np
import pytest
import torch

from cvkit.errors import OptionError
from cvkit.tasks import TASKS, TaskSpec, create_task
from tests.conftest import FAST, REPO, run

TASK_NAMES = {"classify", "multilabel", "localize", "regress", "segment"}
# The dataset contract names the tasks whose targets its files hold (DEFAULT_TASK for files written before
# tasks existed, MULTILABEL for the manifest's labels column, LOCALIZE and REGRESS for the box and target
# columns); prepare's importers and the cache's target reader use those constants.
ALLOWED = {"cvkit/files/dataset.py": {"classify", "multilabel", "localize", "regress", "segment"}}


def _strings(tree: ast.AST) -> set[str]:
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings}


def test_no_task_is_named_outside_the_task_layer_and_the_cli():
    found = {}
    for path in sorted((REPO / "cvkit").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith(("cvkit/tasks/", "cvkit/cli/")):
            continue
        named = {s for s in _strings(ast.parse(path.read_text())) if s in TASK_NAMES} - ALLOWED.get(rel, set())
        if named:
            found[rel] = sorted(named)
    assert not found, f"task names outside cvkit/tasks/ and cvkit/cli/ (ask the task instead): {found}"


def test_every_task_implements_the_interface():
    for name, cls in TASKS.items():
        assert cls.name == name and cls.metric
        task = create_task(name, TaskSpec(["a", "b", "c"]))
        assert task.num_outputs >= 1


def test_classify_matches_the_losses_it_wraps():
    task = create_task("classify", TaskSpec(["a", "b", "c"], "ce", label_smoothing=0.1))
    outputs = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
    labels = torch.tensor([0, 2])
    targets = task.train_targets(labels)
    assert torch.allclose(targets.sum(1), torch.ones(2)) and targets[0, 0] > 0.9
    expected = torch.nn.functional.cross_entropy(outputs, labels, label_smoothing=0.1)
    assert torch.allclose(task.loss(outputs, targets), expected)
    assert int(task.hits(outputs, labels)) == 1
    assert task.score(task.probabilities(outputs).numpy(), labels.numpy()) == 0.5
    assert task.better("val_acc", 0.6, 0.5) and not task.better("val_loss", 0.6, 0.5)
    assert not task.better("val_acc", float("nan"), None)
    task.weigh_classes(np.array([0, 0, 0, 1]))
    assert task.criterion.weights.tolist() == pytest.approx([4 / 9, 4 / 3, 0.0])


def test_an_unknown_task_is_refused_with_the_known_ones():
    with pytest.raises(OptionError, match="--task colorize must be one of classify"):
        create_task("colorize", TaskSpec(["a"]))


def test_a_run_records_its_task_and_train_refuses_a_task_the_dataset_does_not_hold(data, tmp_path, runner):
    out = tmp_path / "r"
    result = run(runner, "-q", "train", data, "--out", out, "--epochs", "1", *FAST, "--task", "classify")
    assert result.exit_code == 0, result.stderr
    assert json.loads((out / "model.json").read_text())["task"] == "classify"
    assert json.loads((out / "config.json").read_text())["task"] == "classify"
    result = run(runner, "train", data, "--out", tmp_path / "r2", "--epochs", "1", *FAST, "--task", "colorize")
    assert result.exit_code == 2 and "--task colorize must be one of classify" in result.stderr
    model = json.loads((out / "model.json").read_text())
    (out / "model.json").write_text(json.dumps({**model, "task": "colorize"}))
    result = run(runner, "evaluate", out, "--split", "val")
    assert result.exit_code == 2 and "model.json: --task colorize must be one of" in result.stderr
