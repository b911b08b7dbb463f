"""`cvkit predict`: new images through a trained run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from tests.conftest import SAMPLE, run


def test_predict_files_folders_and_bad_images(trained, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n-not-really")
    listing = tmp_path / "list.csv"
    listing.write_text("path\n" + str(SAMPLE / "fashion" / "bag" / "001.png") + "\n")
    from typer.testing import CliRunner

    result = run(CliRunner(), "predict", trained, str(SAMPLE / "fashion" / "bag"), str(bad), str(listing),
                 str(SAMPLE / "photos" / "cat.jpg"), "-k", "3", "--out", tmp_path / "p")
    assert result.exit_code == 0, result.stderr
    preds = pd.read_csv(tmp_path / "p" / "predictions.csv")
    assert len(preds) == 20 + 1 + 1
    classes = json.loads((trained / "model.json").read_text())["classes"]
    probs = preds[[f"prob_{c}" for c in classes]].to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (preds["predicted"] == [classes[i] for i in probs.argmax(1)]).all()
    rejected = pd.read_csv(tmp_path / "p" / "rejected.csv")
    assert list(rejected["path"]) == [str(bad)]
    assert "skipped" in result.stderr and "#3" in result.stderr
    # The same images through evaluate's path give the same probabilities (one preprocessing everywhere).
    # Its own evaluation (its own --out), so the comparison never depends on another test having run.
    for split in ("train", "val", "test"):
        result = run(CliRunner(), "-q", "evaluate", trained, "--split", split, "--out", tmp_path / f"ev_{split}")
        assert result.exit_code == 0, result.stderr
    ev = pd.concat([pd.read_csv(tmp_path / f"ev_{split}" / "predictions.csv") for split in ("train", "val", "test")])
    ev_paths = [str(Path(p) if Path(p).is_absolute() else Path(json.loads(
        (trained / "config.json").read_text())["data"]) / p) for p in ev["path"]]
    ev_paths = [os.path.realpath(p) for p in ev_paths]
    pred_paths = [os.path.realpath(p) for p in preds["path"]]
    common = set(ev_paths) & set(pred_paths)
    assert len(common) == 20  # every bag image is in one of the splits
    columns = [f"prob_{c}" for c in classes]
    for path in common:
        assert np.allclose(ev[[p == path for p in ev_paths]][columns].to_numpy(),
                           preds[[p == path for p in pred_paths]][columns].to_numpy()[:1], atol=1e-5), path
