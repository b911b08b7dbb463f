"""``train --log tensorboard``: event files that TensorBoard's own reader finds with metrics.csv's figures."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.conftest import FAST, run, run_ok

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from cvkit.plots.tracker import GRID_GAP  # noqa: E402
from cvkit.train.logbook import BATCH_TAG, CONFUSION_TAG, GRID_COLUMNS  # noqa: E402

TB_RUN = ["--epochs", "2", *FAST, "--seed", "3", "--log", "tensorboard"]


def events(run_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def picture(event) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB"))


def tiles(grid: np.ndarray, size: int) -> list[np.ndarray]:
    """The mosaic's tiles (batch_grid's layout: GRID_COLUMNS a row, one pixel of GRID_GAP between)."""
    step = size + 1
    out = []
    for top in range(0, grid.shape[0], step):
        for left in range(0, grid.shape[1], step):
            tile = grid[top:top + size, left:left + size]
            if not (tile == GRID_GAP).all(axis=2).all():
                out.append(tile[:, :, 0].astype(int))
    return out


def assert_scalars_equal_metrics_csv(run_dir: Path) -> EventAccumulator:
    acc = events(run_dir)
    metrics = pd.read_csv(run_dir / "metrics.csv")
    for column in metrics.columns.drop("epoch"):
        logged = acc.Scalars(column)
        assert [e.step for e in logged] == list(metrics["epoch"]), column
        assert [e.value for e in logged] == pytest.approx(list(metrics[column]), rel=1e-5, abs=1e-7), column
    return acc


def test_tensorboard_holds_each_epochs_metrics_the_augmented_batch_and_the_confusion(data, tmp_path):
    run_dir = tmp_path / "tb"
    # every image mirrored, nothing else: the batch grid must show mirrored training images, not normalized ones
    assert run_ok("-q", "train", data, "--out", run_dir, *TB_RUN, "--augment", "none", "--hflip", "1",
                  "--clip-grad", "5", "--ema", "0.9")
    assert json.loads((run_dir / "config.json").read_text())["log"] == "tensorboard"
    acc = assert_scalars_equal_metrics_csv(run_dir)
    assert {"lr", "images_per_s", "grad_norm", "live_val_acc", "val_acc"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Images(BATCH_TAG)] == [1, 2]
    cached = np.load(next((data / "cache").glob("train_*.npy")))[..., 0].astype(int)  # N x 28 x 28 grey
    grid = picture(acc.Images(BATCH_TAG)[0])
    shown = tiles(grid, 28)
    assert len(shown) == 32 and grid.shape[1] == GRID_COLUMNS * 29 - 1  # the first batch, 8 a row
    for tile in shown:
        assert np.abs(cached[:, :, ::-1] - tile).max(axis=(1, 2)).min() <= 1  # a training image, mirrored
    assert min(np.abs(cached - tile).max() for tile in shown) > 1  # and not as cached
    # the val confusion matrix, one picture per epoch
    matrices = acc.Images(CONFUSION_TAG)
    assert [e.step for e in matrices] == [1, 2]
    assert picture(matrices[-1]).std() > 0


def test_a_run_without_log_writes_no_event_file(trained):
    assert not list(trained.rglob("events.out.tfevents.*"))
    assert json.loads((trained / "config.json").read_text())["log"] == "none"


def test_a_resumed_run_appends_and_drops_the_interrupted_attempts_epochs(data, tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from cvkit.errors import Interrupted
    from cvkit.train import TrainConfig, fit

    def interrupt(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    part = tmp_path / "part"
    cfg = TrainConfig(data=str(data), out=str(part), epochs=3, precision="fp32", memory_format="contiguous",
                      batch_size=32, seed=3, log="tensorboard")
    with pytest.raises(Interrupted):
        fit(cfg, callbacks=(interrupt,))
    # an attempt killed after logging epoch 2 and before saving it: its figure is stale
    stale = SummaryWriter(str(part / "tensorboard"))
    stale.add_scalar("train_loss", 99.0, 2)
    stale.close()
    assert run_ok("-q", "train", "--resume", part)
    assert len(list((part / "tensorboard").iterdir())) == 3  # a new event file per attempt, in one folder
    acc = assert_scalars_equal_metrics_csv(part)  # epochs 1, 2, 3 once each; 99 is gone
    assert [e.step for e in acc.Images(BATCH_TAG)] == [1, 2, 3]


def test_a_task_without_a_confusion_matrix_logs_the_rest(tmp_path):
    from tests.tasks.canvases import write_keypoints

    data = tmp_path / "points"
    csv = write_keypoints(tmp_path / "src", 60, seed=0, size=32, lo=10, hi=20)  # Fashion-MNIST items on canvases
    assert run_ok("-q", "prepare", csv, "--out", data, "--task", "regress", "--targets", "cx,cy", "--keypoints",
                  "--size", "32", "--val", "0.25", "--test", "0.25")
    assert run_ok("-q", "train", data, "--out", tmp_path / "r", *TB_RUN)
    acc = assert_scalars_equal_metrics_csv(tmp_path / "r")
    assert BATCH_TAG in acc.Tags()["images"] and CONFUSION_TAG not in acc.Tags()["images"]


@pytest.mark.parametrize("value, says", [("wandb", "Valid: none, tensorboard"),
                                         ("tensorbord", "Did you mean tensorboard?")])
def test_an_unknown_log_is_refused_in_one_line(data, tmp_path, value, says):
    result = run(CliRunner(), "train", data, "--out", tmp_path / "r", "--epochs", "1", "--log", value)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: --log {value} ") and says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_log_tensorboard_without_the_package_says_how_to_install_it(data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard fails as if not installed
    result = run(CliRunner(), "train", data, "--out", tmp_path / "r", "--epochs", "1", "--log", "tensorboard")
    assert result.exit_code == 2
    assert result.stderr.strip() == ("Error: --log tensorboard needs the tensorboard package: "
                                     "pip install 'cvkit[tensorboard]'")
    assert not (tmp_path / "r").exists()


def test_force_replaces_a_run_with_its_event_files_but_not_a_users_file_beside_them(tmp_path):
    from cvkit.files.owned import own_run

    logs = tmp_path / "run" / "tensorboard"
    logs.mkdir(parents=True)
    (logs / "events.out.tfevents.1796675542.vm.10637.0").write_bytes(b"")
    assert own_run(tmp_path / "run") is None
    (logs / "notes.txt").write_text("mine")
    assert own_run(tmp_path / "run") == logs / "notes.txt"


COUNT_THE_CONFUSION = """
import json, sys
import cvkit.train.logbook
from cvkit.files.config import TrainConfig
from cvkit.train import fit

drawn = []
original = cvkit.train.logbook.confusion_pixels

def count(matrix, classes, title=None):
    drawn.append(int(matrix.sum()))
    return original(matrix, classes, title)

cvkit.train.logbook.confusion_pixels = count
cfg = TrainConfig(data=sys.argv[1], out=sys.argv[2], epochs=1, batch_size=32, precision="fp32",
                  memory_format="contiguous", log="tensorboard")
fit(cfg)
with open(sys.argv[3] + f".{cfg.resolved.world_size}", "a") as f:
    f.write(json.dumps(drawn) + "\\n")
"""


def test_under_torchrun_rank_0_writes_the_confusion_of_every_process_share(data, tmp_path):
    import os
    import textwrap

    from tests.distributed.test_distributed import torchrun

    script = tmp_path / "count.py"
    script.write_text(textwrap.dedent(COUNT_THE_CONFUSION))
    out, drawn = tmp_path / "run", tmp_path / "drawn"
    done = torchrun(data, out, drawn, script=script)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list((out / "tensorboard").iterdir())) == 1  # one writer
    n_val = len(pd.read_csv(data / "manifest.csv").query("split == 'val'"))
    lines = (tmp_path / "drawn.2").read_text().split()
    assert sorted(lines) == sorted(["[]", f"[{n_val}]"])  # rank 0 drew the matrix of the whole val split, rank 1 none
    assert_scalars_equal_metrics_csv(out)
    assert os.path.getsize(next((out / "tensorboard").iterdir())) > 0


def test_the_confusion_picture_colours_each_cell_by_its_share_of_the_true_class():
    from cvkit.plots.tracker import confusion_pixels

    def dark_blue(matrix):  # pixels of Blues' darkest shades (rates near 1), not the black or white text
        rgb = confusion_pixels(np.asarray(matrix), ["cat", "dog <b>"], "val").astype(int)
        return int(((rgb[..., 0] < 60) & (rgb[..., 2] > 100)).sum())

    assert dark_blue([[5, 5], [7, 7]]) < 100  # every rate 0.5 (a few edges of anti-aliased text)
    assert dark_blue([[5, 0], [0, 7]]) > 1000  # two cells of rate 1
    with pytest.raises(ValueError, match="matrix must be"):
        confusion_pixels(np.eye(3, dtype=int), ["a", "b"])
