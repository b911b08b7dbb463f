"""How crossval cuts train+val: holdout, the manifest's folds, leave-one-out; and it never reads the test split."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.conftest import FAST, SAMPLE, run, run_ok

QUICK = ["--arch", "mlp", "--epochs", "1", *FAST]


@pytest.fixture(scope="module")
def no_test(tmp_path_factory) -> Path:
    """A dataset with the manifest's own 3 folds whose test images are corrupt files and not cached."""
    root = tmp_path_factory.mktemp("notest")
    src = root / "src"
    shutil.copytree(SAMPLE / "fashion", src)
    out = root / "ds"
    assert run_ok("-q", "prepare", src, "--out", out, "--size", "28", "--val", "0.2", "--test", "0.2", "--folds", "3")
    manifest = pd.read_csv(out / "manifest.csv")
    tests = manifest.loc[manifest["split"] == "test", "path"]
    assert len(tests) == 40
    for path in tests:
        Path(path if Path(path).is_absolute() else out / path).write_bytes(b"not an image any more")
    shutil.rmtree(out / "cache")  # the test split's cache would hold the images from before
    return out


def test_holdout_never_reads_the_corrupt_test_split(no_test, tmp_path):
    out = tmp_path / "cv"
    result = run(CliRunner(), "crossval", no_test, *QUICK, "--holdout", "0.25", "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    assert "NaN" not in result.stdout  # a single fold has no spread: null, valid JSON
    printed = json.loads(result.stdout)
    assert printed["summary"][0]["val_acc_std"] is None
    assert printed["folds"] == "holdout" and printed["k"] == 1 and printed["trained"] == 1
    folds = pd.read_csv(out / "folds.csv")
    assert sorted(set(folds["fold"])) == [-1, 0] and set(folds["split"]) == {"train", "val"}
    held = folds[folds["fold"] == 0].groupby("label").size()
    assert len(held) == 10 and set(held) == {4}  # 16 train+val images per class, a quarter of each held out
    assert (out / "final" / "model.safetensors").is_file()
    assert sorted(p.name for p in (no_test / "cache").iterdir()) == ["train_28x28.json", "train_28x28.npy",
                                                                     "val_28x28.json", "val_28x28.npy"]
    summary = pd.read_csv(out / "summary.csv")
    assert summary["folds"].tolist() == [1] and np.isnan(summary["val_acc_std"][0])  # one fold: no spread


def test_the_manifests_folds_are_used_when_it_has_them(no_test, tmp_path):
    out = tmp_path / "cv"
    result = run(CliRunner(), "crossval", no_test, *QUICK, "--out", out, "--fold", "2", "--json")
    assert result.exit_code == 0, result.stderr
    plan = json.loads((out / "crossval.json").read_text())
    assert plan["folds"] == "manifest" and plan["k"] == 3
    manifest = pd.read_csv(no_test / "manifest.csv")
    folds = pd.read_csv(out / "folds.csv")
    assert folds["fold"].tolist() == manifest.loc[manifest["split"] != "test", "fold"].tolist()
    config = json.loads((out / "folds" / "default" / "2" / "config.json").read_text())
    assert config["resolved"]["selections"]["val"] == {"splits": ["train", "val"], "fold": 2, "in_fold": True,
                                                       "rows": None}
    assert json.loads(result.stdout)["missing"] == [{"config": "default", "fold": 0}, {"config": "default", "fold": 1}]


def test_other_folds_than_the_manifests_are_assigned_and_stratified(no_test):
    from cvkit.crossval.folds import plan_folds, train_val

    frame = train_val(no_test)
    plan = plan_folds(no_test, frame, folds=4, seed=1)
    assert plan.kind == "kfold" and plan.k == 4
    assert plan.frame.groupby("fold").size().tolist() == [40, 40, 40, 40]
    assert plan_folds(no_test, frame, folds=4, seed=1).frame.equals(plan.frame)  # the seed decides
    assert not plan_folds(no_test, frame, folds=4, seed=2).frame["fold"].equals(plan.frame["fold"])


def test_leave_one_out_has_one_fold_per_image(no_test):
    from cvkit.crossval.folds import plan_folds, train_val

    frame = train_val(no_test)
    plan = plan_folds(no_test, frame, loo=True, loo_limit=500)
    assert plan.kind == "loo" and plan.k == len(frame) == 160
    train, val = plan.selections(7)
    assert val.rows == (int(frame["row"][7]),) and len(train.rows) == 159 and val.rows[0] not in train.rows


def test_leave_one_out_is_refused_above_the_limit(data, tmp_path):
    result = run(CliRunner(), "crossval", data, *QUICK, "--loo", "--out", tmp_path / "cv")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: --loo trains one model per train+val image, and {data} has 160: more "
                                    f"than --loo-limit 100; raise --loo-limit to 160 to run it"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "cv").exists()


@pytest.mark.parametrize("args, needle", [
    (["--folds", "3", "--holdout", "0.2"], "Error: --folds, --holdout and --loo each choose how train+val is cut"),
    (["--folds", "1"], "Error: --folds 1 must be at least 2 (for one split, use --holdout F)"),
    (["--folds", "20"], "Error: --folds 20: class 'ankle_boot' has only 16 image(s) in train+val"),
    (["--holdout", "1.5"], "Error: --holdout 1.5 must be a fraction between 0 and 1"),
    (["--fold", "5"], "Error: --fold 5 does not exist: 5 stratified folds are numbered 0 to 4"),
    (["--epochs", "0"], "Error: --epochs 0 must be 'auto' or a whole number"),
])
def test_bad_fold_options_are_one_line_exit_2(data, tmp_path, args, needle):
    result = run(CliRunner(), "crossval", data, "--arch", "mlp", "--out", tmp_path / "cv", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(needle), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "cv").exists()


def test_out_inside_the_dataset_is_refused(data):
    result = run(CliRunner(), "crossval", data, *QUICK, "--out", data / "cv")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: --out {data / 'cv'} lies inside the dataset {data}")
    assert not (data / "cv").exists()


@pytest.mark.parametrize("manifest_folds", [True, False])
def test_materialized_copies_follow_their_source_and_are_never_validated(data, tmp_path, manifest_folds):
    ds = tmp_path / "ds"
    if manifest_folds:
        assert run_ok("-q", "prepare", SAMPLE / "fashion", "--out", ds, "--size", "28", "--val", "0.2", "--test",
                      "0.2", "--folds", "3")
    else:
        shutil.copytree(data, ds)
    assert run_ok("-q", "augment", ds, "--preset", "light", "--materialize", "1")
    out = tmp_path / "cv"
    assert run_ok("-q", "crossval", ds, *QUICK, "--folds", "3", "--out", out, "--no-refit")
    manifest = pd.read_csv(ds / "manifest.csv", keep_default_na=False)
    source_of = dict(zip(manifest.index, manifest["augmented_from"]))
    row_of_path = dict(zip(manifest["path"], manifest.index))
    for fold in range(3):
        config = json.loads(next(out.glob(f"folds/*/{fold}/config.json")).read_text())
        sel = config["resolved"]["selections"]
        train, val = set(sel["train"]["rows"]), set(sel["val"]["rows"])
        assert val and not any(source_of[r] for r in val)  # no copy is validated on
        copies = [r for r in train if source_of[r]]
        assert copies and not any(row_of_path[source_of[r]] in val for r in copies)  # no copy of a val image trains
