"""`evaluate --tta VIEWS` / `predict --tta VIEWS`: multi-view test-time augmentation, averaged in probability
space, and the tasks moving what a view predicts back to the image."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import SAMPLE, run, run_stdout

# 4% of the 28 px side rounds to 1 px (cvkit.transforms.views.SHIFT)
SHIFT_PX = 1


def _shifted(images: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """N x H x W x C uint8 images moved dx columns right and dy rows down, black (0) brought in."""
    out = np.zeros_like(images)
    h, w = images.shape[1:3]
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        images[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def test_flip_shift_is_the_mean_of_the_views_computed_by_hand(trained, data, tmp_path):
    from cvkit.data import load_split
    from cvkit.runtime import load_run

    classes = json.loads((trained / "model.json").read_text())["classes"]
    columns = [f"prob_{c}" for c in classes]
    tables, metrics = {}, {}
    for name, option in (("plain", ["--no-tta"]), ("flip", ["--tta", "flip"]), ("views", ["--tta", "shift, FLIP"])):
        metrics[name] = json.loads(run_stdout("-q", "evaluate", trained, *option, "--json", "--split", "val",
                                              "--out", tmp_path / name))
        tables[name] = pd.read_csv(tmp_path / name / "predictions.csv")[columns].to_numpy()
    assert metrics["views"]["tta"] is True and metrics["views"]["tta_views"] == ["flip", "shift"]
    assert metrics["flip"]["tta_views"] == ["flip"] and metrics["plain"]["tta"] is False
    assert metrics["plain"]["tta_views"] == []
    assert np.abs(tables["views"] - tables["plain"]).max() > 1e-3  # the views changed the probabilities...
    assert np.abs(tables["views"] - tables["flip"]).max() > 1e-3  # ... and the shifts did, beyond the mirror
    # The mean of each view's probabilities, each view made here on the uint8 images (black borders, as
    # training's --translate pads) and predicted alone
    loaded = load_run(trained, torch.device("cpu"))
    images = load_split(data, "val", loaded.input_size).images
    views = [images, np.ascontiguousarray(images[:, :, ::-1])]
    views += [_shifted(images, dx, dy) for dx, dy in ((SHIFT_PX, 0), (-SHIFT_PX, 0), (0, SHIFT_PX), (0, -SHIFT_PX))]
    expected = np.mean([loaded.predict(v)[0] for v in views], axis=0)
    assert np.allclose(tables["views"], expected, atol=2e-5)
    assert np.allclose(tables["flip"], np.mean([loaded.predict(v)[0] for v in views[:2]], axis=0), atol=2e-5)
    # the library takes the same names, and a list of them
    probs, loss = loaded.predict(images, tta=["shift", "flip"], batch_size=7)
    assert loss is None and np.allclose(probs, expected, atol=1e-6)


@pytest.mark.parametrize("command", ["evaluate", "predict"])
@pytest.mark.parametrize("value, said", [("rotate", "--tta rotate: unknown view 'rotate'"),
                                         ("", "--tta '': an empty view name"),
                                         ("flip,,scale", "--tta flip,,scale: an empty view name"),
                                         ("flp", "--tta flp: unknown view 'flp'. Did you mean flip?")])
def test_bad_tta_views_are_refused_with_the_valid_names(trained, runner, tmp_path, command, value, said):
    inputs = [SAMPLE / "fashion" / "bag"] if command == "predict" else []
    result = run(runner, command, trained, *inputs, "--tta", value, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {said}") and "flip, shift, scale" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_tta_and_no_tta_together_are_refused(trained, runner, tmp_path):
    result = run(runner, "evaluate", trained, "--tta", "flip", "--no-tta", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "Error: --tta flip and --no-tta contradict each other" in result.stderr
    assert not (tmp_path / "out").exists()


def test_predict_tta_views_on_image_files(trained, runner, tmp_path):
    files = sorted((SAMPLE / "fashion" / "bag").glob("*.png"))[:6] + [SAMPLE / "photos" / "cat.jpg"]
    classes = json.loads((trained / "model.json").read_text())["classes"]
    columns = [f"prob_{c}" for c in classes]
    tables = {}
    for name, option in (("plain", ["--no-tta"]), ("all", ["--tta", "flip,shift,scale"]), ("flip", ["--tta", "flip"]),
                         ("bare", ["--tta"])):
        # a bare --tta (the flag before it took views) before another option still means flip
        result = run(runner, "-q", "predict", trained, *files, *option, "--out", tmp_path / name)
        assert result.exit_code == 0, result.stderr
        tables[name] = pd.read_csv(tmp_path / name / "predictions.csv")
    assert list(tables["all"]["path"]) == [str(f) for f in files]
    probs = tables["all"][columns].to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert np.abs(probs - tables["plain"][columns].to_numpy()).max() > 1e-3
    assert np.abs(probs - tables["flip"][columns].to_numpy()).max() > 1e-3
    pd.testing.assert_frame_equal(tables["bare"], tables["flip"])


def test_scale_view_is_trainings_zoom_and_shift_moves_whole_pixels():
    from cvkit.transforms.geometric import geometric
    from cvkit.transforms.policy import AugmentPolicy
    from cvkit.transforms.views import View, make_views

    x = torch.rand(3, 2, 20, 24, generator=torch.Generator().manual_seed(0))
    for zoom in (0.9, 1.1):
        policy = AugmentPolicy(scale=[zoom, zoom])
        # the same grid, built another way: float rounding apart
        assert torch.allclose(View("scale", (20, 24), zoom=zoom)(x), geometric(x, policy, torch.Generator()),
                              atol=1e-5)
    assert [(v.dx, v.dy) for v in make_views(["shift"], (20, 24))] == [(1, 0), (-1, 0), (0, 1), (0, -1)]
    assert [(v.dx, v.dy) for v in make_views(["shift"], (224, 224))] == [(9, 0), (-9, 0), (0, 9), (0, -9)]
    moved = View("shift", (20, 24), dx=2, dy=-1)(x)
    assert torch.equal(moved[:, :, :-1, 2:], x[:, :, 1:, :-2]) and moved[:, :, -1].abs().sum() == 0


def _box_of(image: torch.Tensor) -> np.ndarray:
    """The normalized corners (x0, y0, x1, y1, pixel edges) of the bright pixels of a 1 x H x W image."""
    h, w = image.shape[1:]
    ys, xs = np.nonzero(image[0].numpy() > 0.5)
    return np.array([xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h])


def test_localize_moves_a_views_box_back_to_the_image():
    from cvkit.tasks import TaskSpec, create_task
    from cvkit.transforms.views import make_views

    task = create_task("localize", TaskSpec(["a", "b"]))
    image = torch.zeros(1, 1, 40, 40)
    image[:, :, 8:28, 12:32] = 1.0  # the object: rows 8-27, columns 12-31
    truth = _box_of(image[0])
    views = make_views(["flip", "shift", "scale"], (40, 40))
    assert [v.kind for v in views] == ["flip", "shift", "shift", "shift", "shift", "scale", "scale"]
    for view in views:
        seen = _box_of(view(image)[0])  # where the object is in the view, as a perfect model would say
        assert np.abs(seen - truth).max() > 0.02, view  # the view moved it
        probs = torch.tensor([[0.3, 0.7, *seen]])
        back = task.view_back(probs, view)[0].numpy()
        assert back[:2] == pytest.approx([0.3, 0.7])  # class scores stay
        # zooms resample: the edges of the bright region move by up to a pixel
        assert np.abs(back[2:] - truth).max() <= (1e-6 if view.kind != "scale" else 1.5 / 40), view


def test_keypoints_move_back_and_segment_refuses_views_it_cannot_undo(trained):
    from cvkit.errors import OptionError
    from cvkit.runtime import load_run
    from cvkit.tasks import TaskSpec, create_task
    from cvkit.transforms.views import make_views

    task = create_task("regress", TaskSpec(["x", "y"], "mse", state={"input_size": [40, 40]},
                                           options={"targets": ["x", "y"], "keypoints": True}))
    point = torch.tensor([[15.0, 22.0]])  # in the network input's pixels
    for view in make_views(["shift", "scale"], (40, 40)):
        where = point.clone()  # where the view puts the point
        where[:, 0] = (point[:, 0] - 20) * view.zoom + 20 + view.dx
        where[:, 1] = (point[:, 1] - 20) * view.zoom + 20 + view.dy
        assert torch.allclose(task.view_back(where, view), point), view
    loaded = load_run(trained, torch.device("cpu"))
    assert loaded.tta_views("scale,flip") == ("flip", "scale")  # classify: every view
    loaded.__dict__["task"] = create_task("segment", TaskSpec(["background", "thing"]))
    assert loaded.tta_views("flip") == ("flip",)
    with pytest.raises(OptionError, match=r"^--tta shift: a segment run cannot move its predictions back from a shift "
                                          r"view \(only flip\); leave shift out of --tta$"):
        loaded.tta_views("flip,shift")
