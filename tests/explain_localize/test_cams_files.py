"""cam's files: cams.csv, localization.json and faithfulness.json round trips; the true-box CSV's refusals."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cvkit.errors import ManifestError, SourceError
from cvkit.files.cams import (CAMS_COLUMNS, TrueBox, read_cams_csv, read_faithfulness, read_localization,
                              read_true_boxes, write_cams_csv, write_faithfulness, write_localization)


def rows():
    return [{"path": "/data/a.png", "class": "disc", "score": 0.875, "x0": 1, "y0": 2, "x1": 30, "y1": 31,
             "method": "gradcam", "rank": 1, "map": "a_gradcam.npy"},
            {"path": "/data/b,c.png", "class": "cross", "score": 1e-7, "x0": 0, "y0": 0, "x1": 1, "y1": 1,
             "method": "cam", "rank": 2, "map": "b_cam_top2.npy"}]


def test_cams_csv_round_trip(tmp_path):
    path = write_cams_csv(tmp_path, rows())
    assert path == tmp_path / "cams.csv"
    assert path.read_text().splitlines()[0] == ",".join(CAMS_COLUMNS)
    assert CAMS_COLUMNS[:7] == ("path", "class", "score", "x0", "y0", "x1", "y1")
    frame = read_cams_csv(tmp_path)
    assert frame.to_dict("records") == rows()
    assert [p.name for p in tmp_path.iterdir()] == ["cams.csv"]  # no temporary file left


def test_cams_csv_with_the_required_columns_only(tmp_path):
    only = [{k: v for k, v in r.items() if k in CAMS_COLUMNS[:7]} for r in rows()]
    write_cams_csv(tmp_path, only)
    assert list(read_cams_csv(tmp_path / "cams.csv").columns) == list(CAMS_COLUMNS[:7])
    write_cams_csv(tmp_path, [])
    assert len(read_cams_csv(tmp_path)) == 0
    with pytest.raises(ValueError, match="unknown"):
        write_cams_csv(tmp_path, [{**rows()[0], "colour": "red"}])


@pytest.mark.parametrize("text, message", [
    ("path,class,score,x0,y0,x1\na,b,1,0,0,1\n", "lacks the column(s) y1"),
    ("path,class,score,x0,y0,x1,y1\na,b,1,0,0,x,1\n", "the column x1 must hold numbers"),
    ("path,class,score,x0,y0,x1,y1\na,b,1,0,0,1.5,1\n", "the column x1 must hold whole numbers"),
    ("path,class,score,x0,y0,x1,y1\na,b,1,0,0,1,1\na,b,1,3,0,3,1\n", "row 3: the box is empty or negative"),
])
def test_a_broken_cams_csv_is_refused(tmp_path, text, message):
    (tmp_path / "cams.csv").write_text(text)
    with pytest.raises(ManifestError, match=r"cams.csv.*" + message.replace("(", r"\(").replace(")", r"\)")):
        read_cams_csv(tmp_path)


def test_figures_json_round_trip(tmp_path):
    loc = {"box_threshold": 0.2, "layer": "features.1", "images_with_boxes": 3,
           "methods": {"cam": {"count": 3, "localization_accuracy": 2 / 3, "iou_at_0_5": 1.0, "mean_iou": 0.61,
                               "pointing_game": 1.0}}}
    write_localization(tmp_path, loc)
    assert read_localization(tmp_path) == {"format": 1, **loc}
    assert json.loads((tmp_path / "localization.json").read_text())["format"] == 1
    faith = {"layer": "features.1", "images": 3, "methods": {"gradcam": {"deletion_auc": 0.2,
                                                                           "insertion_auc": float("nan")}}}
    write_faithfulness(tmp_path, faith)
    data = read_faithfulness(tmp_path / "faithfulness.json")
    assert data["methods"]["gradcam"] == {"deletion_auc": 0.2, "insertion_auc": None}  # NaN is not JSON
    (tmp_path / "faithfulness.json").write_text('{"format": 1, "methods": {"cam": {"deletion_auc": "low"}}}')
    with pytest.raises(ManifestError, match="'methods' must map each method to its figures"):
        read_faithfulness(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="empty/localization.json is missing; rerun 'cvkit cam --boxes CSV'"):
        read_localization(tmp_path / "empty")


# ----------------------------------------------------------------------------- the true-box CSV


def boxes_csv(folder: Path, text: str | bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "boxes.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_true_boxes_resolve_like_collect_inputs(tmp_path):
    from cvkit.runtime import collect_inputs

    data = tmp_path / "data"
    inside = os.path.join(data.resolve(), "sub", "c.png")
    csv = boxes_csv(data, f"\ufeffpath,x0,y0,x1,y1,label,note\nimg/a.png,1,2,3,4,disc,x\n./img/../b.png,0,0, 9 ,+9,,\n\n"
                          f"{inside},5,5,6,6,cross,\n")
    boxes = read_true_boxes(csv)
    a, b = str(data.resolve() / "img" / "a.png"), str(data.resolve() / "b.png")
    assert boxes == {a: TrueBox((1, 2, 3, 4), "disc"), b: TrueBox((0, 0, 9, 9), None),
                     inside: TrueBox((5, 5, 6, 6), "cross")}
    box, label = boxes[a]  # unpacks as (box, label)
    assert (box, label) == ((1, 2, 3, 4), "disc")
    for p in ("img/a.png", "b.png", "sub/c.png"):
        (data / p).parent.mkdir(parents=True, exist_ok=True)
        (data / p).touch()
    assert set(collect_inputs([str(csv)])) == set(boxes)  # the same spelling as the images found


def test_true_boxes_found_through_a_symlinked_folder(tmp_path):
    csv = boxes_csv(tmp_path / "data", "path,x0,y0,x1,y1\na.png,1,2,3,4\n")
    (tmp_path / "link").symlink_to(tmp_path / "data")
    boxes = read_true_boxes(csv)
    other = str(tmp_path / "link" / "a.png")
    assert other in boxes and boxes[other] == boxes.get(other) == TrueBox((1, 2, 3, 4), None)
    assert str(tmp_path / "link" / "z.png") not in boxes and boxes.get("/nowhere") is None
    with pytest.raises(KeyError):
        boxes[str(tmp_path / "z.png")]


@pytest.mark.parametrize("body, start", [
    ("a.png,1,2,3\n", "row 2: 4 fields under a header of 5; fix that row"),
    ("a.png,1,2,3,4,5\n", "row 2: 6 fields under a header of 5; fix that row"),
    ("a.png,1,2,3,4\n,0,0,1,1\n", "row 3: the path is empty or holds a NUL byte; fix that row"),
    ("a\x00.png,0,0,1,1\n", "row 2: the path is empty or holds a NUL byte; fix that row"),
    ("a.png,1.5,2,3,4\n", "row 2: x0 '1.5' is not a whole number of pixels; fix that row"),
    ("a.png,1,two,3,4\n", "row 2: y0 'two' is not a whole number of pixels; fix that row"),
    ("a.png,1,2,,4\n", "row 2: x1 '' is not a whole number of pixels; fix that row"),
    ("a.png,-1,2,3,4\n", "row 2: x0 -1 is negative; boxes are in the image's pixels, from 0; fix that row"),
    ("a.png,3,2,3,4\n", "row 2: x1 3 is not above x0 3: the box is empty (x1 is exclusive); fix that row"),
    ("a.png,1,5,3,4\n", "row 2: y1 4 is not above y0 5: the box is empty (y1 is exclusive); fix that row"),
    ("a.png,1,2,3,4\nb.png,1,2,3,4\n./sub/../a.png,0,0,1,1\n",
     "row 4: './sub/../a.png' already has a box in row 2; give one box per image; fix that row"),
    ("../outside.png,1,2,3,4\n", "row 2: the path '../outside.png' leads outside "),
    ("sub/../../outside.png,1,2,3,4\n", "row 2: the path 'sub/../../outside.png' leads outside "),
    ("/etc/passwd,1,2,3,4\n", "row 2: the path '/etc/passwd' leads outside "),
])
def test_bad_rows_are_refused_with_their_number(tmp_path, body, start):
    csv = boxes_csv(tmp_path / "data", "path,x0,y0,x1,y1\n" + body)
    with pytest.raises(SourceError) as caught:
        read_true_boxes(csv)
    message = str(caught.value)
    assert message.startswith(f"{csv} {start}"), message
    assert "\n" not in message and message.endswith("; fix that row")
    if "leads outside" in start:
        assert "paths in a CSV never escape their dataset" in message


def test_a_symlink_out_of_the_folder_is_refused(tmp_path):
    (tmp_path / "secret.png").touch()
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.png").symlink_to(tmp_path / "secret.png")
    csv = boxes_csv(data, "path,x0,y0,x1,y1\na.png,1,2,3,4\n")
    with pytest.raises(SourceError, match=r"row 2: the path 'a.png' leads outside .*; fix that row"):
        read_true_boxes(csv)


def test_a_path_with_a_newline_stays_on_one_line(tmp_path):
    csv = boxes_csv(tmp_path / "data", 'path,x0,y0,x1,y1\n"../a\nb.png",1,2,3,4\n')
    with pytest.raises(SourceError) as caught:
        read_true_boxes(csv)
    assert "\n" not in str(caught.value) and "'../a\\nb.png'" in str(caught.value)


@pytest.mark.parametrize("text, start", [
    ("a.png,1,2,3,4\nb.png,1,2,3,4\n", "lacks the column(s) path, x0, y0, x1, y1; its first line must be the header"),
    ("path,x,y,x1,y1\na.png,1,2,3,4\n", "lacks the column(s) x0, y0; its first line must be the header path,x0,y0,x1,y1"),
    ("path,x0,y0,x1,y1\n", "lists no boxes"),
    ("", "is empty; give a CSV with the header path,x0,y0,x1,y1"),
    ("path,x0,y0,x1,y1\n\n", "lists no boxes"),
    (b"path,x0,y0,x1,y1\n\xff\xfe.png,1,2,3,4\n", "cannot be read as CSV ("),
])
def test_bad_files_are_refused(tmp_path, text, start):
    csv = boxes_csv(tmp_path, text)
    with pytest.raises(SourceError) as caught:
        read_true_boxes(csv)
    assert str(caught.value).startswith(f"{csv} {start}"), str(caught.value)


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(SourceError, match=r"^--boxes .*nope.csv is not a file; give a CSV with the header"):
        read_true_boxes(tmp_path / "nope.csv")


def test_the_shapes_boxes_read(shapes):
    boxes = read_true_boxes(shapes / "boxes.csv")
    assert len(boxes) == 180
    first = str((shapes / "images" / "disc" / "000.png").resolve())
    assert first in boxes and all(0 <= v <= 32 for v in boxes[first].box)
