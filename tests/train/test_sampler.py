"""``train --sampler``: class-balanced drawing, on scikit-learn's digits with half the classes made rare."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.conftest import run, run_ok, run_stdout

RARE = [5, 6, 7, 8, 9]  # these classes keep a tenth of their training images
# train's defaults (--epochs auto: 80 epochs of 5 steps here), without the start-up speed probe
TRAIN = ["--precision", "fp32", "--memory-format", "contiguous"]
SEEDS = (0, 1, 2)  # one seed's test recall of 150 rare images moves by several points: the mean of three


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory) -> Path:
    """Digits as a CSV source: val and test 30 images per class, train the rest (a tenth for RARE)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    root = tmp_path_factory.mktemp("digits")
    rows = ["path,label,split"]
    for d in range(10):
        images = np.rint(digits.images[digits.target == d] * 255 / 16).astype(np.uint8)
        train_n = len(images) - 60
        keep = train_n // 10 if d in RARE else train_n
        for i, image in enumerate(images[:60 + keep]):
            name = f"{d}_{i}.png"
            Image.fromarray(image, "L").save(root / name)
            rows.append(f"{name},{d},{'test' if i < 30 else 'val' if i < 60 else 'train'}")
    (root / "digits.csv").write_text("\n".join(rows) + "\n")
    out = root / "prepared"
    assert run_ok("-q", "prepare", root / "digits.csv", "--out", out, "--size", "8")
    return out


def minority_recall(tmp_path: Path, run_dir: Path) -> tuple[float, float]:
    metrics = json.loads(run_stdout("-q", "evaluate", run_dir, "--split", "test", "--json", "--out", tmp_path / f"eval_{run_dir.name}"))
    recall = {row["class"]: row["recall"] for row in metrics["per_class"]}
    return float(np.mean([recall[str(d)] for d in RARE])), metrics["macro_f1"]


def test_balanced_sampling_raises_the_rare_classes_recall(imbalanced, tmp_path):
    scores: dict[str, list[tuple[float, float]]] = {"none": [], "balanced": []}
    for seed in SEEDS:
        for sampler in scores:
            out = tmp_path / f"{sampler}{seed}"
            result = run(CliRunner(), "train", imbalanced, "--out", out, *TRAIN, "--seed", seed, "--sampler", sampler)
            assert result.exit_code == 0, result.stderr
            scores[sampler].append(minority_recall(tmp_path, out))
    assert "--sampler balanced: the rarest group (11 images) is drawn about" in result.stderr
    draws = json.loads((out / "config.json").read_text())["resolved"]["sampler_draws"]
    assert max(draws) / min(draws) < 1.01  # every class drawn equally often (in expectation)
    (plain_recall, plain_f1), (balanced_recall, balanced_f1) = (np.mean(scores[k], 0) for k in ("none", "balanced"))
    assert balanced_recall > plain_recall + 0.03, scores
    assert balanced_f1 > plain_f1, scores


def test_the_sampler_draws_by_the_weights_with_replacement():
    import torch

    from cvkit.data.batches import Batches
    from cvkit.data.sampling import group_counts, sample_weights

    labels = np.array([0] * 90 + [1] * 10)
    groups = labels[:, None] == np.arange(2)[None, :]
    for mode, share in (("balanced", 0.5), ("sqrt", 1 / (1 + 3))):  # sqrt: 10/sqrt(10) against 90/sqrt(90)
        weights = sample_weights(groups, mode)
        assert group_counts(groups, weights)[1][1] / len(labels) == pytest.approx(share)
    images = np.zeros((100, 2, 2, 1), np.uint8)
    batches = Batches(images, labels, 100, torch.device("cpu"), shuffle=True, drop_last=True,
                      weights=sample_weights(groups, "balanced"))
    drawn = torch.cat([y for _, y in batches.epoch(torch.Generator().manual_seed(0))] * 1)
    assert len(drawn) == 100 and 35 <= int((drawn == 1).sum()) <= 65  # about half rare, not a tenth
    order = [batches._order(torch.Generator().manual_seed(s)) for s in (1, 1)]
    assert torch.equal(order[0], order[1])  # seeded


def test_multilabel_groups_take_the_rarest_label():
    from cvkit.data.sampling import sample_weights
    from cvkit.tasks import TaskSpec, create_task

    task = create_task("multilabel", TaskSpec(["a", "b"], "ce", 0.0))
    targets = np.array([[1, 0]] * 8 + [[1, 1]] * 2 + [[0, 0]] * 2, np.float32)
    groups = task.sampling_groups(targets)
    assert groups.shape == (12, 3) and groups[-1, 2] and not groups[0, 2]
    weights = sample_weights(groups, "balanced")
    assert weights[8] == pytest.approx(weights[10]) and weights[8] > weights[0]  # "b" is rarer than "a"


def test_a_sampler_on_a_task_without_classes_or_a_bad_name_is_refused(imbalanced, tmp_path):
    result = run(CliRunner(), "train", imbalanced, "--out", tmp_path / "r", "--epochs", "1", "--sampler", "often")
    assert result.exit_code == 2 and "--sampler often must be one of none, balanced, sqrt" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()
    from cvkit.errors import OptionError
    from cvkit.tasks import TaskSpec, create_task

    with pytest.raises(OptionError, match="--sampler balances classes, and --task regress"):
        create_task("regress", TaskSpec(["y"], "ce", 0.0, options={"targets": ["y"]})).sampling_groups(np.zeros((3, 1)))
