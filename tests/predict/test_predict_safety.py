"""`cvkit predict` writes only its own --out and refuses what cannot work with one `Error:` line."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tests.conftest import SAMPLE, leftovers, make_image, run, tree

IMAGE = SAMPLE / "fashion" / "bag" / "001.png"


def test_out_over_the_dataset_is_refused(trained, data):
    before = tree(data)
    result = run(CliRunner(), "predict", trained, IMAGE, "--out", data)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: --out {data} lies inside the dataset {data}"), result.stderr
    assert tree(data) == before  # rejected.csv above all


def test_nul_byte_in_a_csv_input_is_a_clean_error(trained, tmp_path):
    listing = tmp_path / "list.csv"
    listing.write_bytes(b"path\n" + str(IMAGE).encode() + b"\nbad\x00name.png\n")
    result = run(CliRunner(), "predict", trained, listing, "--out", tmp_path / "p")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {listing} row 3: the path is empty or holds a NUL byte")
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("option, value, message", [
    ("--batch-size", "0", "--batch-size 0 must be at least 1"),
    ("--workers", "-3", "--workers -3 must be at least 1 (or left out: one per core)"),
    ("-k", "0", "-k 0 must be at least 1"),
])
def test_impossible_options_are_refused(trained, tmp_path, option, value, message):
    out = tmp_path / "p"
    result = run(CliRunner(), "predict", trained, IMAGE, option, value, "--out", out)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {message}"), result.stderr
    assert not out.exists() and leftovers(tmp_path) == []


def test_every_input_rejected_is_an_error(trained, tmp_path):
    bad = tmp_path / "in" / "broken.png"
    bad.parent.mkdir()
    bad.write_bytes(b"\x89PNG\r\n\x1a\n-not-really")
    (tmp_path / "in" / "empty.jpg").write_bytes(b"")
    result = run(CliRunner(), "predict", trained, tmp_path / "in", "--out", tmp_path / "p")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith("Error: none of the 2 input image(s) could be read")
    assert not (tmp_path / "p").exists()


def test_a_file_as_out_is_called_a_file(trained, tmp_path):
    out = tmp_path / "empty.txt"
    out.write_text("")
    result = run(CliRunner(), "predict", trained, IMAGE, "--out", out)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: --out {out} is a file, not a folder")


def test_an_image_inside_out_is_refused(trained, tmp_path):
    image = make_image(tmp_path / "p" / "new.png", seed=3)
    result = run(CliRunner(), "predict", trained, image, "--out", tmp_path / "p")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: --out {tmp_path / 'p'} contains {image}, which this command reads")
    assert image.is_file()


def test_an_out_holding_other_files_beside_a_predictions_csv_is_kept(trained, tmp_path):
    """--out is replaced only when it holds nothing but predict's own files."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "predictions.csv").write_text("path,predicted\n")
    (out / "notes.txt").write_text("the user's own file")
    result = run(CliRunner(), "predict", trained, SAMPLE / "fashion" / "bag", "--out", out)
    assert result.exit_code == 2 and "holds files cvkit did not write" in result.stderr
    assert (out / "notes.txt").read_text() == "the user's own file"
    (out / "notes.txt").unlink()
    assert run(CliRunner(), "-q", "predict", trained, SAMPLE / "fashion" / "bag", "--out", out).exit_code == 0
