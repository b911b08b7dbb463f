"""`cvkit retrieve` through the CLI on the shapes run: index, append, query, eval against raw pixels,
duplicates across splits, and one-line refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, PngImagePlugin
from typer.testing import CliRunner

from tests.conftest import run


def cli(*args):
    return run(CliRunner(), *args)


def run_data(run_dir: Path) -> Path:
    return Path(json.loads((run_dir / "config.json").read_text())["data"])


@pytest.fixture(scope="module")
def index(shapes_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("retrieve") / "idx"
    result = cli("retrieve", "index", shapes_run, run_data(shapes_run), "--out", out)
    assert result.exit_code == 0, result.stderr
    return out


def test_index_files(index, shapes_run):
    meta = json.loads((index / "meta.json").read_text())
    items = pd.read_csv(index / "items.csv")
    embeddings = np.load(index / "embeddings.npy")
    manifest = pd.read_csv(run_data(shapes_run) / "manifest.csv")
    train = manifest[manifest.split == "train"]
    assert meta["format"] == 1 and meta["layer"] == "pre_logits" and meta["dtype"] == "float32"
    assert meta["count"] == len(train) == len(items) == len(embeddings) and meta["dimension"] == 64  # smallcnn GAP width
    assert list(items.columns) == ["row", "path", "label", "split"] and (items.split == "train").all()
    assert sorted(items.label) == sorted(train.label)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_learned_features_beat_raw_pixels(index, shapes_run, tmp_path):
    out = tmp_path / "ev"
    result = cli("retrieve", "eval", index, "--queries", run_data(shapes_run), "--split", "test", "-k", "1,5",
                 "--out", out)
    assert result.exit_code == 0, result.stderr
    report = json.loads((out / "retrieve_eval.json").read_text())
    assert result.stdout.strip() == str(out / "retrieve_eval.json")
    assert report["excluded_self"] == 0 and report["query_count"] == 36
    learned, pixels = report["learned"], report["raw_pixels"]
    # measured: 0.99 against 0.37 (the shapes sit on textured noise, which dominates raw pixels)
    assert learned["precision@5"] > 0.9 and learned["precision@5"] > pixels["precision@5"] + 0.3
    assert learned["map"] > pixels["map"] + 0.3
    assert 0 < learned["recall@5"] <= 1 and "precision@1" in learned


def test_eval_of_the_indexed_split_leaves_each_query_out(index, shapes_run, tmp_path):
    result = cli("retrieve", "eval", index, "--queries", run_data(shapes_run), "--split", "train", "-k", "1",
                 "--no-baseline", "--json", "--out", tmp_path / "ev")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["excluded_self"] == report["count"] == report["query_count"] and "raw_pixels" not in report
    assert report["learned"]["precision@1"] > 0.8


def test_query_table_sheet_and_self_match(index, shapes_run, tmp_path):
    items = pd.read_csv(index / "items.csv")
    images = [items.path[0], items.path[len(items) - 1]]
    out = tmp_path / "q"
    result = cli("retrieve", "query", index, *images, "-k", "3", "--out", out)
    assert result.exit_code == 0, result.stderr
    table = pd.read_csv(out / "neighbors.csv")
    assert list(table.columns) == ["query", "rank", "path", "label", "score"] and len(table) == 6
    assert table.groupby("query")["rank"].apply(list).tolist() == [[1, 2, 3]] * 2
    firsts = table[table["rank"] == 1]
    assert firsts.path.tolist() == images and np.allclose(firsts.score, 1.0, atol=1e-5)  # an indexed image finds itself
    assert pd.read_csv(pd.io.common.StringIO(result.stdout)).shape == (6, 5)
    sheet = np.asarray(Image.open(out / "neighbors.png"))
    assert sheet.shape[0] > 2 * 112 and sheet.shape[1] > 4 * 112


def test_append_adds_only_new_images_atomically(shapes_run, tmp_path):
    data, out = run_data(shapes_run), tmp_path / "idx"
    assert cli("retrieve", "index", shapes_run, data, "--out", out, "--split", "val", "--half").exit_code == 0
    first = np.load(out / "embeddings.npy")
    result = cli("retrieve", "index", shapes_run, data, "--out", out, "--split", "test", "--half")
    assert result.exit_code == 0, result.stderr
    meta = json.loads((out / "meta.json").read_text())
    items = pd.read_csv(out / "items.csv")
    both = np.load(out / "embeddings.npy")
    assert meta["dtype"] == "float16" and both.dtype == np.float16 and meta["count"] == len(both) == 72
    assert np.array_equal(both[:36], first) and items.split.tolist() == ["val"] * 36 + ["test"] * 36
    assert items.row.tolist() == list(range(72))
    again = cli("retrieve", "index", shapes_run, data, "--out", out, "--split", "test", "--half")
    assert again.exit_code == 0 and "0 image(s) of test added (36 already indexed)" in again.stderr
    assert sorted(p.name for p in out.iterdir()) == ["embeddings.npy", "items.csv", "meta.json"]
    # another run, another layer, another dtype: refused, the index untouched
    other = tmp_path / "other_run"
    shutil.copytree(shapes_run, other)
    for args, text in (((other, data, "--half"), "indexes the run"),
                       ((shapes_run, data, "--half", "--layer", "features.0"), "holds layer pre_logits"),
                       ((shapes_run, data), "stores float16")):
        refused = cli("retrieve", "index", *args, "--out", out, "--split", "train")
        assert refused.exit_code == 2 and refused.stderr.startswith("Error: ") and text in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    assert np.array_equal(np.load(out / "embeddings.npy"), both)


def test_layer_option_pools_a_feature_map(shapes_run, tmp_path):
    out = tmp_path / "idx"
    result = cli("retrieve", "index", shapes_run, run_data(shapes_run), "--out", out, "--split", "val",
                 "--layer", "features.0")
    assert result.exit_code == 0, result.stderr
    meta = json.loads((out / "meta.json").read_text())
    assert meta["layer"] == "features.0" and meta["dimension"] == 32  # smallcnn's first stage: 32 channels
    wrong = cli("retrieve", "index", shapes_run, run_data(shapes_run), "--out", tmp_path / "x", "--layer", "nope")
    assert wrong.exit_code == 2 and "has no layer 'nope'" in wrong.stderr


def _leaky_dataset(shapes: Path, folder: Path) -> tuple[Path, str, str]:
    """A CSV-sourced dataset with fixed splits, where one train image has a copy (other bytes, same
    pixels) in test; returns the dataset and the two absolute paths."""
    src = folder / "src"
    rows = []
    for kind in ("disc", "square", "cross"):
        for i, p in enumerate(sorted((shapes / "images" / kind).glob("*.png"))[:8]):
            target = src / kind / p.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(p, target)
            rows.append((f"{kind}/{p.name}", kind, "train" if i < 5 else ("val" if i < 6 else "test")))
    original = src / "disc" / sorted((src / "disc").iterdir())[0].name
    copy = src / "disc" / "copy.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("note", "a copy")  # other bytes (another sha1), the same pixels
    Image.open(original).save(copy, pnginfo=info)
    rows.append(("disc/copy.png", "disc", "test"))
    pd.DataFrame(rows, columns=["path", "label", "split"]).to_csv(src / "list.csv", index=False)
    data = folder / "data"
    result = cli("-q", "prepare", src / "list.csv", "--out", data, "--size", "32")
    assert result.exit_code == 0, result.stderr
    return data, str(original.resolve()), str(copy.resolve())


def test_duplicates_flags_a_copy_across_splits(shapes_run, shapes, tmp_path):
    data, original, copy = _leaky_dataset(shapes, tmp_path)
    out = tmp_path / "idx"
    assert cli("retrieve", "index", shapes_run, data, "--out", out).exit_code == 0
    assert cli("retrieve", "index", shapes_run, data, "--out", out, "--split", "test").exit_code == 0
    result = cli("retrieve", "duplicates", out, "--threshold", "1", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    pairs = pd.read_csv(out / "duplicates.csv")
    assert summary["pairs"] == len(pairs) == 1 and summary["cross_split"] == 1
    row = pairs.iloc[0]
    assert {row.path_a, row.path_b} == {original, copy} and bool(row.cross_split)
    assert {row.split_a, row.split_b} == {"train", "test"} and row.similarity == pytest.approx(1.0, abs=1e-5)
    near = cli("retrieve", "duplicates", out, "--threshold", "0.5", "--max-pairs", "3", "--out", tmp_path / "d")
    assert near.exit_code == 0 and len(pd.read_csv(tmp_path / "d" / "duplicates.csv")) == 3


@pytest.mark.parametrize("args, text", [
    (("query", "{tmp}", "{img}"), "is not a retrieval index"),
    (("eval", "{tmp}", "--queries", "{tmp}"), "is not a retrieval index"),
    (("duplicates", "{tmp}"), "is not a retrieval index"),
    (("query", "{index}", "{img}", "-k", "0"), "-k 0 must be at least 1"),
    (("eval", "{index}", "--queries", "{data}", "-k", "0,5"), "must be whole numbers of at least 1"),
    (("duplicates", "{index}", "--threshold", "1.5"), "must lie in (-1, 1]"),
    (("duplicates", "{index}", "--threshold", "-1"), "must lie in (-1, 1]"),
    (("index", "{run}", "{data}", "--out", "{tmp}/i", "--index-type", "annoy"), "must be one of flat, ivf, hnsw"),
    (("index", "{run}", "{run}", "--out", "{tmp}/i"), "is not a dataset directory"),
])
def test_bad_inputs_one_line_exit_2(args, text, index, shapes_run, tmp_path):
    values = {"tmp": tmp_path, "index": index, "run": shapes_run, "data": run_data(shapes_run),
              "img": pd.read_csv(index / "items.csv").path[0]}
    result = cli("retrieve", *(a.format(**values) for a in args))
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("Error: ") and text in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_faiss_missing_says_how_to_install(monkeypatch):
    from cvkit.errors import OptionError
    from cvkit.retrieve import approx

    monkeypatch.setattr(approx.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(OptionError, match=r"pip install 'cvkit\[faiss\]'"):
        approx.check_index_type("hnsw")


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_faiss_index_recall_against_exact(kind, index, shapes_run, tmp_path):
    pytest.importorskip("faiss")
    out = tmp_path / "idx"
    assert cli("retrieve", "index", shapes_run, run_data(shapes_run), "--out", out, "--index-type", kind).exit_code == 0
    assert (out / "faiss.index").is_file()
    result = cli("retrieve", "eval", out, "--queries", run_data(shapes_run), "--no-baseline", "--json", "-k", "5")
    assert result.exit_code == 0, result.stderr
    approximate = json.loads(result.stdout)["approximate"]
    assert approximate["index_type"] == kind and 0.5 <= approximate["recall@5_vs_exact"] <= 1.0
    items = pd.read_csv(out / "items.csv")
    q = cli("retrieve", "query", out, items.path[0], "-k", "2", "--out", tmp_path / "q")
    assert q.exit_code == 0 and "approximate search" in q.stderr
    assert pd.read_csv(tmp_path / "q" / "neighbors.csv").path[0] == items.path[0]
