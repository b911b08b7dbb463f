"""Hostile files given to every command that reads them: pickles that would run code, broken
safetensors, manifest rows that lead outside the dataset, malformed JSON. Each is refused with a
one-line error (exit 2, no traceback) and nothing it carries ever runs."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.conftest import FAST, SAMPLE, make_image, run

SENTINEL_NAME = "PAYLOAD_RAN"


class Payload:
    """Unpickling calls os.system: a file that runs code when loaded with weights_only=False."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return os.system, (f"touch {self.sentinel}",)


def one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert result.stderr.startswith("Error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


def copy_run(trained: Path, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    return run_dir


def evil_file(path: Path, sentinel: Path, nested: bool) -> Path:
    torch.save({"model": {"w": Payload(sentinel)}} if nested else Payload(sentinel), path)
    return path


# ----------------------------------------------------------------------------- pickles


@pytest.mark.parametrize("nested", [False, True], ids=["top", "nested"])
def test_a_pickle_that_runs_code_is_refused_by_resume_and_weights(data, trained, tmp_path, runner, nested):
    sentinel = tmp_path / SENTINEL_NAME
    run_dir = copy_run(trained, tmp_path)
    evil_file(run_dir / "last.ckpt", sentinel, nested)
    one_line_error(run(runner, "train", "--resume", run_dir), "last.ckpt", "posix.system")
    weights = evil_file(tmp_path / "evil.pt", sentinel, nested)
    one_line_error(run(runner, "train", data, "--out", tmp_path / "new", "--weights", weights, *FAST), "evil.pt",
                   "posix.system")
    assert not sentinel.exists() and not (tmp_path / "new").exists()


@pytest.mark.parametrize("command", ["evaluate", "predict", "cam", "retrieve"])
def test_a_pickle_as_model_safetensors_is_refused_unrun(data, trained, tmp_path, runner, command):
    sentinel = tmp_path / SENTINEL_NAME
    run_dir = copy_run(trained, tmp_path)
    evil_file(run_dir / "model.safetensors", sentinel, nested=True)
    image = str(SAMPLE / "fashion" / "bag" / "000.png")
    args = {"evaluate": ["evaluate", run_dir, "--split", "val"], "predict": ["predict", run_dir, image],
            "cam": ["cam", run_dir, image], "retrieve": ["retrieve", "index", run_dir, data, "--out", tmp_path / "idx"]}
    one_line_error(run(runner, *args[command]), "model.safetensors")
    assert not sentinel.exists()


# ----------------------------------------------------------------------------- broken safetensors


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _huge_header(path: Path) -> None:
    path.write_bytes(struct.pack("<Q", 2**62) + path.read_bytes()[8:])


def _wrong_classes(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(path)
    head = [k for k, v in state.items() if v.ndim >= 1 and v.shape[0] == 10][-2:]  # the classifier's weight and bias
    save_file({k: (v[:3] if k in head else v) for k, v in state.items()}, str(path))


@pytest.mark.parametrize("damage", [_truncated, _huge_header, _wrong_classes], ids=["truncated", "huge-header", "classes"])
def test_a_broken_safetensors_is_a_one_line_error(data, trained, tmp_path, runner, damage):
    run_dir = copy_run(trained, tmp_path)
    damage(run_dir / "model.safetensors")
    one_line_error(run(runner, "evaluate", run_dir, "--split", "val"), "model.safetensors")
    one_line_error(run(runner, "predict", run_dir, SAMPLE / "fashion" / "bag"), "model.safetensors")
    if damage is not _wrong_classes:  # --weights skips a classifier of another shape by design
        one_line_error(run(runner, "train", data, "--out", tmp_path / "new", "--weights", run_dir / "model.safetensors",
                           *FAST), "model.safetensors")


# ----------------------------------------------------------------------------- manifest rows


def _dataset_copy(data: Path, tmp_path: Path) -> Path:
    out = tmp_path / "data"
    shutil.copytree(data, out, symlinks=True)
    shutil.rmtree(out / "cache")  # the next command rebuilds it from the manifest
    return out


def _escape(kind: str, dataset: Path, tmp_path: Path) -> str:
    outside = make_image(tmp_path / "outside" / "x.png", seed=1, size=(28, 28), mode="L")
    if kind == "parent":
        return "../../../../../../../../etc/passwd"
    if kind == "absolute":
        return str(outside)
    if kind == "nul":
        return "images/a\x00.png"
    os.symlink(outside, dataset / "link.png")  # a link inside the dataset to a file outside it
    return "link.png"


@pytest.mark.parametrize("kind", ["parent", "absolute", "nul", "symlink"])
@pytest.mark.parametrize("command", ["normalize", "train", "evaluate", "retrieve"])
def test_a_manifest_row_leading_outside_the_dataset_is_refused_with_its_row(data, trained, tmp_path, runner, kind,
                                                                            command):
    dataset = _dataset_copy(data, tmp_path)
    manifest = pd.read_csv(dataset / "manifest.csv", keep_default_na=False)
    split = "val" if command == "evaluate" else "train"
    row = int(manifest.index[manifest["split"] == split][3])
    manifest.loc[row, "path"] = _escape(kind, dataset, tmp_path)
    manifest.to_csv(dataset / "manifest.csv", index=False)
    args = {"normalize": ["normalize", dataset], "train": ["train", dataset, "--out", tmp_path / "r", *FAST],
            "evaluate": ["evaluate", trained, "--data", dataset, "--split", "val", "--out", tmp_path / "e"],
            "retrieve": ["retrieve", "index", trained, dataset, "--out", tmp_path / "idx"]}
    one_line_error(run(runner, *args[command]), "manifest.csv", f"row {row + 2}")
    assert not (tmp_path / "r").exists() and not (tmp_path / "e").exists() and not (tmp_path / "idx").exists()


def test_absolute_rows_inside_the_recorded_source_are_read(data):
    info = json.loads((data / "dataset.json").read_text())
    assert info["source_root"] == os.path.realpath(SAMPLE / "fashion")
    assert all(p.startswith(info["source_root"]) for p in pd.read_csv(data / "manifest.csv")["path"])


def test_prepare_rejects_a_source_file_linking_outside_the_source(tmp_path, runner):
    src = tmp_path / "src"
    for label in ("a", "b"):
        for i in range(4):
            make_image(src / label / f"{i}.png", seed=i + 10 * ord(label), size=(16, 16))
    outside = make_image(tmp_path / "secret.png", seed=99, size=(16, 16))
    os.symlink(outside, src / "a" / "link.png")
    result = run(runner, "-q", "prepare", src, "--out", tmp_path / "d", "--max-rejected", "0.5")
    assert result.exit_code == 0, result.stderr
    rejected = pd.read_csv(tmp_path / "d" / "rejected.csv")
    assert list(rejected["reason"]) == ["links outside the source folder"]
    assert str(outside) not in (tmp_path / "d" / "manifest.csv").read_text()


# ----------------------------------------------------------------------------- malformed JSON


def _edit(path: Path, change) -> None:
    if change == "bad-json":
        path.write_text(path.read_text()[:-5] + "{{")
        return
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _inner(data: dict) -> dict:
    return data["policy"] if "policy" in data else data  # augment.json keeps its values under "policy"


def _first_key(data: dict, keys=("arch", "mean", "hflip", "channels")) -> str:
    return next(k for k in keys if k in _inner(data))


MUTATIONS = {
    "bad-json": ("bad-json", "not valid JSON"),
    "wrong-type": (lambda d: _inner(d).__setitem__(_first_key(d), "nope" if _first_key(d) != "arch" else 7), None),
    "unknown-key": (lambda d: _inner(d).__setitem__("surprise", 1), "surprise"),
    "future-format": (lambda d: d.__setitem__("format", 99), "format 99"),
}


@pytest.mark.parametrize("mutation", MUTATIONS)
@pytest.mark.parametrize("which", ["model.json", "stats.json", "augment.json", "dataset.json", "config.json"])
def test_a_malformed_json_file_names_itself_and_the_key(data, trained, tmp_path, runner, which, mutation):
    dataset = tmp_path / "data"
    shutil.copytree(data, dataset, symlinks=True)
    run_dir = copy_run(trained, tmp_path)
    if which == "augment.json":
        assert run(runner, "-q", "augment", dataset, "--hflip", "0.5").exit_code == 0
    target = (run_dir if which in ("model.json", "config.json") else dataset) / which
    change, needle = MUTATIONS[mutation]
    _edit(target, change)
    if needle is None:
        key = _first_key(json.loads(target.read_text()))
        needle = f"'{key}'"
    if which == "model.json":
        args = ["evaluate", run_dir, "--data", dataset, "--split", "val"]
    elif which == "config.json":
        ckpt = torch.load(run_dir / "last.ckpt", weights_only=True)
        ckpt["epoch"] = 1  # an unfinished run, so that --resume reads config.json
        torch.save(ckpt, run_dir / "last.ckpt")
        args = ["train", "--resume", run_dir]
    else:
        args = ["train", dataset, "--out", tmp_path / "r", *FAST]
    one_line_error(run(runner, *args), which, needle)
