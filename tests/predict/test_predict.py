"""`cvkit predict`: new images through a trained run."""

from __future__ import annotations

import json

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
    ev = pd.read_csv(trained / "eval_test" / "predictions.csv") if (trained / "eval_test").exists() else None
    if ev is not None:
        common = set(ev["path"]) & set(preds["path"])
        for path in common:
            assert np.allclose(ev[ev["path"] == path][[f"prob_{c}" for c in classes]].to_numpy(),
                               preds[preds["path"] == path][[f"prob_{c}" for c in classes]].to_numpy(), atol=1e-5)
