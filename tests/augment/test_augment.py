"""`cvkit augment` (policy file, preview, materialize) and `train --augment`, through the CLI."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from cvkit.transforms.policy import PRESETS, AugmentPolicy
from tests.conftest import FAST, run, run_ok, run_stdout, tree


@pytest.fixture
def ds(data, tmp_path) -> Path:
    """A private copy of the session's prepared sample dataset (augment writes into it)."""
    copy = tmp_path / "fashion"
    shutil.copytree(data, copy)
    return copy


def policy_of(folder: Path) -> dict:
    return json.loads((folder / "augment.json").read_text())["policy"]


def test_preset_with_options_on_top_is_written_whole(ds, runner):
    result = run(runner, "augment", ds, "--preset", "standard", "--hflip", "0", "--hue", "0.1", "--scale", "0.8,1.25")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(ds / "augment.json")
    written = policy_of(ds)
    expected = {**AugmentPolicy().to_json(), **PRESETS["standard"], "hflip": 0.0, "hue": 0.1, "scale": [0.8, 1.25]}
    assert written == expected  # every field, so the file alone says what train does
    # Without options the command shows the policy and writes nothing.
    before = tree(ds)
    assert json.loads(run_stdout("augment", ds, "--json"))["policy"] == expected
    assert tree(ds) == before


def test_options_alone_replace_an_earlier_policy(ds):
    run_ok("-q", "augment", ds, "--preset", "strong")
    run_ok("-q", "augment", ds, "--rotate", "5")
    assert AugmentPolicy(**policy_of(ds)).active == {"rotate": 5.0}
    run_ok("-q", "augment", ds, "--preset", "none")
    assert AugmentPolicy(**policy_of(ds)).active == {}


@pytest.mark.parametrize("args, names", [
    (["--rotate", "-5"], "--rotate"), (["--hflip", "1.5"], "--hflip"), (["--preset", "heavy"], "--preset"),
    (["--scale", "1.2,0.8"], "--scale"), (["--scale", "big"], "--scale"), (["--hue", "0.7"], "--hue"),
    (["--preview", "500", "--preset", "light"], "--preview"), (["--materialize", "3"], "augment.json"),
    (["--crop", "1"], "--crop"),
])
def test_bad_options_fail_in_one_line_and_write_nothing(ds, runner, args, names):
    before = tree(ds)
    result = run(runner, "augment", ds, *args)
    assert result.exit_code == 2 and names in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert tree(ds) == before


def test_not_a_dataset_and_a_bad_policy_file_are_named(tmp_path, ds, runner):
    result = run(runner, "augment", tmp_path, "--preset", "light")
    assert result.exit_code == 2 and "cvkit prepare" in result.stderr
    (ds / "augment.json").write_text(json.dumps({"format": 1, "policy": {"scale": 1.1}}))
    result = run(runner, "train", ds, "--epochs", "1", "--out", tmp_path / "run", *FAST)
    assert result.exit_code == 2 and "augment.json" in result.stderr and "scale" in result.stderr


def test_preview_shows_originals_beside_augmented_versions(ds):
    out = json.loads(run_stdout("augment", ds, "--preset", "strong", "--mixup", "0.4", "--preview", "4", "--json"))
    png = Path(out["preview"])
    assert png == ds / "augment_preview.png"
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > im.height  # 4 rows of 6 images, 1 original + 5 versions
    # A preview of the dataset's own policy writes the picture and leaves augment.json alone.
    before = (ds / "augment.json").read_bytes()
    png.unlink()
    run_ok("-q", "augment", ds, "--preview", "2")
    assert png.is_file() and (ds / "augment.json").read_bytes() == before


def test_materialize_adds_k_copies_of_each_train_image_only(ds):
    frame = pd.read_csv(ds / "manifest.csv", keep_default_na=False)
    counts = frame["split"].value_counts().to_dict()
    out = json.loads(run_stdout("-q", "augment", ds, "--preset", "standard", "--materialize", "2", "--json"))
    after = pd.read_csv(ds / "manifest.csv", keep_default_na=False)
    copies = after[after["augmented_from"] != ""]
    assert out["materialized_rows"] == len(copies) == 2 * counts["train"]
    assert set(copies["split"]) == {"train"}
    assert after["split"].value_counts().to_dict() == {**counts, "train": 3 * counts["train"]}
    originals = after[after["augmented_from"] == ""]
    assert originals.drop(columns="augmented_from").equals(frame)  # the original rows untouched
    source = originals.set_index("path")
    for row in copies.itertuples():
        assert source.loc[row.augmented_from, "split"] == "train"
        assert source.loc[row.augmented_from, "label"] == row.label  # labels kept
        assert source.loc[row.augmented_from, "fold"] == row.fold
        assert hashlib.sha1((ds / row.path).read_bytes()).hexdigest() == row.sha1
        with Image.open(ds / row.path) as im:
            assert im.size == (28, 28)
    # Again with K=1: the earlier copies are replaced, not added to.
    run_ok("-q", "augment", ds, "--materialize", "1")
    again = pd.read_csv(ds / "manifest.csv", keep_default_na=False)
    assert (again["augmented_from"] != "").sum() == counts["train"]
    assert sum(1 for p in (ds / "augmented").rglob("*.png")) == counts["train"]
    # Training reads the copies (the cache is rebuilt for the new rows).
    assert run_ok("-q", "train", ds, "--epochs", "1", "--out", ds.parent / "run", "--augment", "none", *FAST)
    config = json.loads((ds.parent / "run" / "config.json").read_text())
    assert config["resolved"]["augment_source"] == "none"


def test_a_failed_materialize_leaves_the_dataset_as_it_was(ds, monkeypatch):
    import cvkit.augment.materialize as mat
    from cvkit.device import resolve_device
    from cvkit.transforms.policy import make_policy

    before = tree(ds)
    calls = []

    def broken(array):
        calls.append(1)
        if len(calls) > 5:
            raise OSError("disk on fire")
        return b"png"

    monkeypatch.setattr(mat, "encode_png", broken)
    with pytest.raises(OSError):
        mat.materialize(ds, make_policy({}, "light"), 1, 0, resolve_device("cpu"))
    assert tree(ds) == before and not list(ds.parent.glob(".augmented*"))


def test_train_records_the_policy_it_used(ds, tmp_path):
    run_ok("-q", "augment", ds, "--preset", "light", "--vflip", "0.25")
    run_ok("-q", "train", ds, "--epochs", "1", "--out", tmp_path / "a", *FAST)
    resolved = json.loads((tmp_path / "a" / "config.json").read_text())["resolved"]
    assert resolved["augment"] == {**AugmentPolicy().to_json(), **PRESETS["light"], "vflip": 0.25}
    assert resolved["augment_source"] == str(ds / "augment.json")
    # --hflip on the command line goes over the policy.
    run_ok("-q", "train", ds, "--epochs", "1", "--out", tmp_path / "b", "--hflip", "0", *FAST)
    resolved = json.loads((tmp_path / "b" / "config.json").read_text())["resolved"]
    assert resolved["augment"]["hflip"] == 0.0 and resolved["augment"]["vflip"] == 0.25
    # --augment FILE: another policy file; --augment none: nothing at all.
    policy_file = tmp_path / "mine.json"
    policy_file.write_text(json.dumps({"format": 1, "policy": {"rotate": 7}}))
    run_ok("-q", "train", ds, "--epochs", "1", "--out", tmp_path / "c", "--augment", policy_file, *FAST)
    resolved = json.loads((tmp_path / "c" / "config.json").read_text())["resolved"]
    assert AugmentPolicy(**resolved["augment"]).active == {"rotate": 7.0}
    assert resolved["augment_source"] == str(policy_file)
    run_ok("-q", "train", ds, "--epochs", "1", "--out", tmp_path / "d", "--augment", "none", *FAST)
    assert AugmentPolicy(**json.loads((tmp_path / "d" / "config.json").read_text())["resolved"]["augment"]).active == {}


def test_without_a_policy_train_flips_half_the_time(data, tmp_path, runner):
    run_ok("-q", "train", data, "--epochs", "1", "--out", tmp_path / "a", *FAST)
    resolved = json.loads((tmp_path / "a" / "config.json").read_text())["resolved"]
    assert AugmentPolicy(**resolved["augment"]).active == {"hflip": 0.5} and resolved["augment_source"] == "default"
    result = run(runner, "train", data, "--epochs", "1", "--out", tmp_path / "b", "--augment", tmp_path / "no.json", *FAST)
    assert result.exit_code == 2 and "no.json" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "b").exists()


def test_preview_pairs_each_train_image_with_its_versions(ds, monkeypatch):
    import numpy as np

    import cvkit.augment.preview as pre
    from cvkit.data.selection import Selection, load_selection
    from cvkit.device import resolve_device
    from cvkit.transforms.policy import make_policy

    seen = {}
    monkeypatch.setattr(pre, "plot_augment_preview", lambda *args: seen.update(args=args))
    pre.preview(ds, make_policy({"rotate": 30, "cutmix": 1.0}), 6, 0, resolve_device("cpu"))
    originals, labels, versions, titles, described, path = seen["args"]
    train = load_selection(ds, Selection.of_split("train"))
    assert versions.shape == (6, pre.VERSIONS, 28, 28, 1) and len(set(labels)) == 6  # one image per class
    for image, label in zip(originals, labels):
        match = [i for i in range(len(train.labels)) if np.array_equal(train.images[i], image)]
        assert match and train.classes[train.labels[match[0]]] == label
    assert not np.array_equal(versions[:, 0], originals)
    for row in titles:
        for title in row:  # soft labels: at most two classes, weights summing to 1
            weights = [float(t.rsplit(" ", 1)[1]) for t in title]
            assert 1 <= len(weights) <= 2 and abs(sum(weights) - 1) < 0.02
    assert "cutmix 1" in described and path == ds / "augment_preview.png"


def test_materialize_never_deletes_files_it_did_not_write(ds, runner):
    run_ok("-q", "augment", ds, "--preset", "light", "--materialize", "1")
    mine = ds / "augmented" / "notes.txt"
    mine.write_text("the user's own file")
    before = tree(ds)
    result = run(runner, "augment", ds, "--materialize", "2")
    assert result.exit_code == 2 and "notes.txt" in result.stderr and "Traceback" not in result.stderr
    assert tree(ds) == before and mine.read_text() == "the user's own file"


def test_a_failed_manifest_write_puts_the_old_copies_back(ds, monkeypatch):
    import cvkit.augment.materialize as mat
    from cvkit.device import resolve_device
    from cvkit.transforms.policy import make_policy

    run_ok("-q", "augment", ds, "--preset", "light", "--materialize", "1")

    def files():  # the cache is derived: it may be rebuilt for the current rows
        return {k: v for k, v in tree(ds).items() if not k.startswith("cache")}

    before = files()

    def full_disk(*args):
        raise OSError("no room for the manifest")

    monkeypatch.setattr(mat, "write_manifest", full_disk)
    with pytest.raises(OSError):
        mat.materialize(ds, make_policy({}, "standard"), 2, 1, resolve_device("cpu"))
    assert files() == before  # the old copies and the manifest that lists them, as they were
    assert not [p.name for p in ds.iterdir() if p.name.startswith(".")]
