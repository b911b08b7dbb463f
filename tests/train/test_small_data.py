"""Training that is right on small datasets, and on any data selection (a fold, listed rows)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cvkit.data.selection import Selection
from cvkit.files.dataset import read_manifest
from tests.conftest import FAST, SAMPLE, run_ok, run_stdout


def test_eval_mode_agrees_with_what_the_weights_learned(data, tmp_path):
    """A short run on 120 images: the running BatchNorm statistics are recomputed from the training
    images, so eval-mode predictions match training (without it: near-uniform, accuracy ~0.1-0.2)."""
    out = tmp_path / "run"
    # One step per epoch (the batch is capped at the 120 training images), as in 'make demo'.
    assert run_ok("-q", "train", data, "--out", out, "--epochs", "12", "--precision", "fp32",
                  "--memory-format", "contiguous", "--batch-size", "128")
    last = pd.read_csv(out / "metrics.csv").iloc[-1]
    metrics = json.loads(run_stdout("-q", "evaluate", out, "--split", "train", "--json", "--out", tmp_path / "e"))
    assert metrics["accuracy"] >= last["train_acc"] - 0.1, (metrics["accuracy"], last["train_acc"])
    probs = pd.read_csv(tmp_path / "e" / "predictions.csv").filter(like="prob_").to_numpy()
    assert probs.max(1).mean() > 0.4  # a trained classifier, not 1/10 everywhere


def test_epochs_auto_scales_with_the_dataset(data, tmp_path):
    from cvkit.files.config import TrainConfig
    from cvkit.train.setup import DEFAULT_EPOCHS, MAX_AUTO_EPOCHS, MIN_STEPS, plan_epochs

    auto = TrainConfig(epochs="auto")
    assert plan_epochs(auto, 422) == (DEFAULT_EPOCHS, f"--epochs auto: {DEFAULT_EPOCHS} epochs of 422 steps")
    epochs, why = plan_epochs(auto, 11)
    assert epochs == -(-MIN_STEPS // 11) and str(MIN_STEPS) in why
    assert plan_epochs(auto, 1)[0] == MAX_AUTO_EPOCHS
    assert plan_epochs(TrainConfig(epochs=3), 1) == (3, "--epochs")


def test_the_chosen_epochs_are_printed_and_recorded(data, tmp_path):
    from typer.testing import CliRunner

    from tests.conftest import run

    out = tmp_path / "run"
    # 120 images at batch 120: one step per epoch, so auto asks for many epochs; --patience ends it early.
    result = run(CliRunner(), "train", data, "--out", out, "--patience", "1", "--monitor", "val_loss", *FAST)
    assert result.exit_code == 0, result.stderr
    resolved = json.loads((out / "config.json").read_text())["resolved"]
    assert f"--epochs auto: {resolved['epochs']} epochs" in result.stderr
    assert resolved["epochs"] > 5 and resolved["batch_size"] == 32


def _corrupt_test_split(dataset: Path) -> None:
    manifest = read_manifest(dataset)
    for path in manifest[manifest["split"] == "test"]["path"]:
        Path(path if Path(path).is_absolute() else dataset / path).write_bytes(b"not an image")
    for cache in (dataset / "cache").glob("test_*"):
        cache.unlink()


@pytest.fixture
def folded(tmp_path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(SAMPLE / "fashion", src)
    out = tmp_path / "folded"
    assert run_ok("-q", "prepare", src, "--out", out, "--size", "28", "--val", "0.2", "--test", "0.2", "--folds", "3")
    assert run_ok("-q", "normalize", out)
    return out


def test_fit_on_a_fold_never_reads_the_test_split(folded, tmp_path):
    from cvkit.files.config import TrainConfig
    from cvkit.train import fit

    _corrupt_test_split(folded)
    cfg = TrainConfig(data=str(folded), out=str(tmp_path / "fold0"), epochs=2, precision="fp32",
                      memory_format="contiguous", batch_size=32)
    result = fit(cfg, train=Selection.of_fold(0, validation=False), val=Selection.of_fold(0, validation=True))
    assert result.epochs_run == 2
    manifest = read_manifest(folded)
    fold_train = manifest[manifest["split"].isin(["train", "val"]) & (manifest["fold"] != 0)]
    pixels = np.stack([np.asarray(Image.open(folded / p if not Path(p).is_absolute() else p)) for p in fold_train["path"]])
    info = json.loads((tmp_path / "fold0" / "model.json").read_text())
    assert info["mean"][0] == pytest.approx(pixels.mean() / 255, abs=1e-5)  # statistics of the fold's images only
    config = json.loads((tmp_path / "fold0" / "config.json").read_text())
    assert config["resolved"]["selections"]["val"] == {"splits": ["train", "val"], "fold": 0, "in_fold": True,
                                                       "rows": None}
    assert not list((folded / "cache").glob("test_*"))


def test_fit_on_listed_rows_and_the_selection_contents(folded, tmp_path):
    from cvkit.data.selection import load_selection
    from cvkit.files.config import TrainConfig
    from cvkit.train import fit

    manifest = read_manifest(folded)
    rows = manifest.index[manifest["split"] == "train"].tolist()[::2]
    picked = load_selection(folded, Selection.of_rows(rows))
    assert picked.rows == rows and picked.paths == manifest.loc[rows, "path"].tolist()
    whole = load_selection(folded, Selection.of_split("train"))
    position = {r: i for i, r in enumerate(whole.rows)}
    assert np.array_equal(picked.images, np.asarray(whole.images)[[position[r] for r in rows]])
    cfg = TrainConfig(data=str(folded), out=str(tmp_path / "rows"), epochs=1, precision="fp32",
                      memory_format="contiguous", batch_size=16)
    assert fit(cfg, train=Selection.of_rows(rows), val=Selection.of_split("val")).epochs_run == 1


def test_recalibration_runs_only_while_the_run_is_short(data, tmp_path):
    import torch

    from cvkit.files.config import TrainConfig
    from cvkit.train.batchnorm import RECALIBRATE_BELOW_STEPS
    from cvkit.train.trainer import Trainer

    cfg = TrainConfig(data=str(data), out=str(tmp_path / "r"), epochs=1, precision="fp32",
                      memory_format="contiguous", batch_size=32)
    trainer = Trainer.build(cfg)
    bn = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert trainer.recalibrate_batchnorm() == 4  # smallcnn's four BatchNorm layers
    assert int(bn.num_batches_tracked) > 0 and bn.momentum == 0.1
    before = bn.running_mean.clone()
    trainer.scheduler.last_epoch = RECALIBRATE_BELOW_STEPS  # a long run: Fashion-MNIST is past it after epoch 1
    assert trainer.recalibrate_batchnorm() == 0
    assert torch.equal(bn.running_mean, before)
