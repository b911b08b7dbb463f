"""Careless and hostile use of the commands that write runs (issue 19): --force next to a user's files at
every depth, NaN and infinity in every float option, models whose weights or outputs are not finite,
runs that fail before their first epoch, and the modes of what cvkit writes."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch
import typer
from safetensors.torch import load_file, save_file

from cvkit.cli import app
from tests.conftest import FAST, SAMPLE, run
from tests.hostile.test_hostile_files import copy_run, one_line_error

# ----------------------------------------------------------------------------- --force and a user's files


def test_train_force_keeps_a_user_file_inside_a_run_output_folder(data, trained, tmp_path, runner):
    run_dir = copy_run(trained, tmp_path)
    assert run(runner, "-q", "evaluate", run_dir, "--split", "val").exit_code == 0
    assert run(runner, "-q", "predict", run_dir, SAMPLE / "fashion" / "bag").exit_code == 0
    for folder, name in (("eval_val", "mynotes.txt"), ("predict", "keep.txt"), ("eval_val/shard-0-of-2", "x.csv")):
        note = run_dir / folder / name
        note.parent.mkdir(exist_ok=True)
        note.write_text("mine")
        one_line_error(run(runner, "train", data, "--out", run_dir, "--epochs", "1", *FAST, "--force"),
                       f"holds files cvkit did not write there ({note})")
        assert note.read_text() == "mine"
        note.unlink()
    # cvkit's own outputs at every depth are replaced without complaint
    result = run(runner, "-q", "train", data, "--out", run_dir, "--epochs", "1", *FAST, "--force")
    assert result.exit_code == 0, result.stderr
    assert not (run_dir / "eval_val").exists() and (run_dir / "model.safetensors").is_file()


def test_crossval_force_keeps_a_user_file_under_folds(data, tmp_path, runner):
    out = tmp_path / "cvx"
    base = ["crossval", data, "--epochs", "1", *FAST, "--out", out, "--no-refit"]
    assert run(runner, "-q", *base, "--folds", "2").exit_code == 0
    config = next((out / "folds").iterdir())
    for note in (out / "folds" / "notes.txt", config / "notes.txt", next(config.iterdir()) / "eval_val" / "n.txt"):
        note.parent.mkdir(exist_ok=True)
        note.write_text("mine")
        one_line_error(run(runner, *base, "--folds", "3", "--force"), f"holds files cvkit did not write there ({note})")
        assert note.read_text() == "mine"
        note.unlink()


# ----------------------------------------------------------------------------- NaN and infinity


def _commands(cmd=None, path=()):
    cmd = cmd or typer.main.get_command(app)
    if hasattr(cmd, "commands"):
        for name, sub in cmd.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield path, cmd


FLOAT_OPTIONS = [(path, cmd, p.opts[0]) for path, cmd in _commands() for p in cmd.params
                 if p.param_type_name == "option" and p.type_descriptor.annotation is float]


def test_there_are_float_options_to_check():
    names = {opt for _, _, opt in FLOAT_OPTIONS}
    assert {"--momentum", "--lr", "--blur", "--rotate", "--mixup", "--val", "--threshold"} <= names
    assert len(FLOAT_OPTIONS) > 40


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("path,cmd,option", FLOAT_OPTIONS, ids=[f"{' '.join(p)} {o}" for p, _, o in FLOAT_OPTIONS])
def test_every_float_option_of_every_command_refuses_nan_and_infinity(runner, tmp_path, path, cmd, option, value):
    """One check for all of them (cvkit/checks.py, run by the CLI's error handler) before the command starts:
    positional arguments are placeholders, never read."""
    args = []
    for p in cmd.params:
        if p.required and p.name != option.lstrip("-").replace("-", "_"):
            args += [str(tmp_path / "missing")] if p.param_type_name == "argument" else [p.opts[0], "1"]
    one_line_error(run(runner, *path, *args, f"{option}={value}"), f"{option} {value} is not a finite number")


@pytest.mark.parametrize("option", ["blur", "rotate", "noise", "brightness", "contrast", "saturation", "elastic",
                                    "mixup", "cutmix"])
def test_augment_refuses_nan_and_keeps_the_policy(data, tmp_path, runner, option):
    dataset = tmp_path / "ds"
    shutil.copytree(data, dataset)
    assert run(runner, "-q", "augment", dataset, "--hflip", "0.5").exit_code == 0
    before = (dataset / "augment.json").read_bytes()
    one_line_error(run(runner, "augment", dataset, f"--{option}", "nan"), f"--{option} nan is not a finite number")
    assert (dataset / "augment.json").read_bytes() == before
    assert b"NaN" not in before


@pytest.mark.parametrize("args,needle", [
    (["augment", "DATA", "--scale", "0.9,inf"], "--scale 0.9,inf is not a finite number"),
    (["train", "DATA", "--budget", "nan"], "--budget nan must be a duration"),
    (["train", "DATA", "--epochs", "nan"], "--epochs nan must be 'auto' or a whole number"),
    (["crossval", "DATA", "--grid", "lr=0.1,nan"], "--grid lr=0.1,nan"),
])
def test_floats_inside_text_options_refuse_nan(data, tmp_path, runner, args, needle):
    dataset = tmp_path / "ds"
    shutil.copytree(data, dataset)
    args = [str(dataset) if a == "DATA" else a for a in args]
    one_line_error(run(runner, *args, "--out", tmp_path / "out") if args[0] != "augment" else run(runner, *args),
                   needle)
    assert not (tmp_path / "out").exists()


def test_a_policy_file_with_nan_is_refused_and_train_leaves_nothing(data, tmp_path, runner):
    """Issue 19.9 and 19.12: augment.json holding NaN gave an internal error, or a misleading 'lower --lr',
    and left a run folder holding only config.json."""
    dataset = tmp_path / "ds"
    shutil.copytree(data, dataset)
    assert run(runner, "-q", "augment", dataset, "--rotate", "9").exit_code == 0
    policy = json.loads((dataset / "augment.json").read_text())
    for name in ("rotate", "blur"):
        bad = dict(policy, policy=dict(policy["policy"], **{name: float("nan")}))
        (dataset / "augment.json").write_text(json.dumps(bad))
        out = tmp_path / f"run_{name}"
        one_line_error(run(runner, "train", dataset, "--out", out, "--epochs", "1", *FAST),
                       "augment.json", f"--{name} nan is not a finite number")
        assert not out.exists()


def test_a_run_that_diverges_in_its_first_epoch_leaves_nothing(data, tmp_path, runner):
    out = tmp_path / "runs" / "r"
    result = run(runner, "-q", "train", data, "--out", out, "--epochs", "2", *FAST, "--optimizer", "sgd", "--lr", "1e30")
    one_line_error(result, "at epoch 1", "lower --lr")
    assert not out.exists() and os.listdir(tmp_path / "runs") == []
    result = run(runner, "-q", "train", data, "--out", out, "--epochs", "1", *FAST)  # no --force needed
    assert result.exit_code == 0, result.stderr


def test_augment_validates_everything_before_it_writes(data, tmp_path, runner):
    """Issue 19.13: --materialize -1 failed after augment.json had been replaced."""
    dataset = tmp_path / "ds"
    shutil.copytree(data, dataset)
    assert run(runner, "-q", "augment", dataset, "--hflip", "0.5").exit_code == 0
    before = (dataset / "augment.json").read_bytes()
    for args in (["--materialize", "-1"], ["--materialize", "1000"], ["--preview", "-2"]):
        result = run(runner, "augment", dataset, "--rotate", "9", *args)
        one_line_error(result, args[0])
        assert (dataset / "augment.json").read_bytes() == before, args


# ----------------------------------------------------------------------------- models that are not finite


def nan_run(trained: Path, tmp_path: Path) -> Path:
    run_dir = copy_run(trained, tmp_path)
    state = load_file(run_dir / "model.safetensors")
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[name].view(-1)[0] = float("nan")
    save_file(state, run_dir / "model.safetensors")
    return run_dir


@pytest.mark.parametrize("command", [["evaluate", "RUN", "--split", "val"], ["predict", "RUN", "IMAGE"],
                                     ["cam", "RUN", "IMAGE"], ["export", "RUN", "--format", "safetensors"],
                                     ["visualize", "RUN", "--filters"], ["retrieve", "index", "RUN", "DATA"]])
def test_every_command_refuses_a_model_with_nan_weights(data, trained, tmp_path, runner, command):
    """Issue 19.5: evaluate scored NaN outputs as accuracy 0.333 (argmax over NaN is class 0)."""
    run_dir = nan_run(trained, tmp_path)
    image = SAMPLE / "fashion" / "bag" / "000.png"
    args = [{"RUN": run_dir, "IMAGE": image, "DATA": data}.get(a, a) for a in command]
    one_line_error(run(runner, *args, "--out", tmp_path / "out"), "model.safetensors holds 1 NaN or infinite weights")
    assert not (tmp_path / "out").exists()


def negative_variance_run(trained: Path, tmp_path: Path) -> Path:
    """Finite weights whose outputs are NaN: a BatchNorm running variance below zero (sqrt of it)."""
    run_dir = copy_run(trained, tmp_path)
    state = load_file(run_dir / "model.safetensors")
    name = next(k for k in state if k.endswith("running_var"))
    state[name] = -torch.ones_like(state[name])
    save_file(state, run_dir / "model.safetensors")
    return run_dir


def test_evaluate_and_predict_refuse_nan_outputs(data, trained, tmp_path, runner):
    run_dir = negative_variance_run(trained, tmp_path)
    result = run(runner, "evaluate", run_dir, "--split", "val", "--out", tmp_path / "ev")
    one_line_error(result, "gives NaN or infinite outputs for", "retrain it")
    result = run(runner, "-q", "predict", run_dir, SAMPLE / "fashion" / "bag", "--out", tmp_path / "pr")
    one_line_error(result, "gives NaN or infinite outputs for")
    assert not (tmp_path / "ev").exists() and not (tmp_path / "pr").exists()


def test_export_fails_a_comparison_with_nan(data, trained, tmp_path, runner):
    """Issue 19.6: 'largest probability difference nan, top-1 agreement 100.0%', and the file written."""
    run_dir = negative_variance_run(trained, tmp_path)
    result = run(runner, "export", run_dir, "--format", "torchscript", "--out", tmp_path / "ex")
    one_line_error(result, "not finite")
    assert not (tmp_path / "ex").exists()


# ----------------------------------------------------------------------------- modes


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_outputs_get_the_modes_the_umask_asks_for(tmp_path, runner, mask):
    """Issue 19.14: every folder was 0700 and every file 0600 (tempfile's private defaults)."""
    old = os.umask(mask)
    try:
        data = tmp_path / "ds"
        assert run(runner, "-q", "prepare", SAMPLE / "fashion", "--out", data, "--size", "16").exit_code == 0
        assert run(runner, "-q", "normalize", data).exit_code == 0
        result = run(runner, "-q", "train", data, "--out", tmp_path / "run", "--epochs", "1", *FAST)
        assert result.exit_code == 0, result.stderr
        assert run(runner, "-q", "evaluate", tmp_path / "run", "--split", "val").exit_code == 0
    finally:
        os.umask(old)
    paths = [p for top in (data, tmp_path / "run") for p in (top, *top.rglob("*"))]
    assert len(paths) > 20
    for path in paths:
        want = (0o777 if path.is_dir() else 0o666) & ~mask
        assert stat.S_IMODE(path.stat().st_mode) == want, (path, oct(path.stat().st_mode))


def test_starting_weights_that_are_not_finite_are_refused(data, trained, tmp_path, runner):
    """Training from them ended in 'the loss became nan ... lower --lr', which points at the wrong cause."""
    state = load_file(trained / "model.safetensors")
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name].view(-1)[0] = float("inf")
    save_file(state, tmp_path / "w.safetensors")
    result = run(runner, "train", data, "--out", tmp_path / "r", "--epochs", "1", *FAST, "--weights", tmp_path / "w.safetensors")
    one_line_error(result, "w.safetensors holds 1 NaN or infinite values")
    assert not (tmp_path / "r").exists()


def test_prepare_force_names_the_file_of_a_user_in_the_dataset_at_any_depth(idx_folder, tmp_path, runner):
    """Issue 19.17: prepare --force onto a dataset holding a user file said only 'only cvkit prepare writes there'."""
    out = tmp_path / "ds"
    assert run(runner, "-q", "prepare", idx_folder, "--out", out, "--size", "8").exit_code == 0
    assert run(runner, "-q", "normalize", out).exit_code == 0
    picture = next((out / "images").rglob("*.png"))
    for note in (out / "notes.txt", out / "cache" / "mine.npy", picture.parent / "notes.txt"):
        note.write_text("mine")
        one_line_error(run(runner, "prepare", idx_folder, "--out", out, "--size", "8", "--force"),
                       f"holds files cvkit did not write there ({note})")
        assert note.read_text() == "mine"
        note.unlink()
    assert run(runner, "-q", "prepare", idx_folder, "--out", out, "--size", "8", "--force").exit_code == 0


def test_a_dataset_being_written_is_not_written_by_a_second_command(data, tmp_path, runner):
    """The lock of issue 19.3 for the commands that write into a dataset: prepare, normalize and augment."""
    import subprocess
    import sys

    dataset = tmp_path / "ds"
    shutil.copytree(data, dataset)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from cvkit.files.lock import acquire; "
                               f"acquire({str(dataset)!r}); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for args in (["normalize", dataset], ["augment", dataset, "--hflip", "0.5"],
                     ["prepare", SAMPLE / "fashion", "--out", dataset, "--force"]):
            one_line_error(run(runner, *args), f"is being written by another cvkit process (pid {holder.pid} on ")
    finally:
        holder.kill()
        holder.wait()
    assert not (dataset / "augment.json").exists() or (dataset / "augment.json").read_bytes() == (data / "augment.json").read_bytes()
    assert run(runner, "-q", "augment", dataset, "--hflip", "0.5").exit_code == 0  # the killed holder blocks nobody
