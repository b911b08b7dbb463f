"""`cvkit train` never loses a user's data, and refuses what cannot work with one `Error:` line."""

from __future__ import annotations

import errno
import json
import pickle
import shutil
import warnings

import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import FAST, leftovers, make_image, run, run_ok, run_with_file_limit, tree, warnings_printed

# ----------------------------------------------------------------------------- 11. --out over the dataset


@pytest.mark.parametrize("where", ["dataset", "parent"])
def test_out_over_the_dataset_is_refused_even_with_force(data, where):
    before = tree(data)
    out = data if where == "dataset" else data.parent
    for force in ([], ["--force"]):
        result = run(CliRunner(), "train", data, "--out", out, "--epochs", "1", *force, *FAST)
        assert result.exit_code == 2
        verb = "is" if where == "dataset" else "contains"
        assert result.stderr.startswith(f"Error: --out {out} {verb} {data}, which this command reads"), result.stderr
        assert "a run" not in result.stderr
    assert tree(data) == before


# ----------------------------------------------------------------------------- 12. a full disk with --force


def test_full_disk_with_force_keeps_the_old_run(data, trained, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(trained, old)
    before = tree(old)
    # model.safetensors (3 MB for smallcnn on 28x28) cannot be written under a 1 MB file limit.
    proc = run_with_file_limit(1_000_000, "-q", "train", data, "--out", old, "--force", "--epochs", "1", *FAST)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: the disk is full"), proc.stderr
    assert tree(old) == before and leftovers(tmp_path) == []
    assert run_ok("-q", "train", data, "--out", old, "--force", "--epochs", "1", *FAST)
    assert tree(old) != before and json.loads((old / "config.json").read_text())["epochs"] == 1


def test_no_room_in_a_library_call_is_disk_full(data, tmp_path, monkeypatch):
    import safetensors.torch

    from cvkit.errors import DiskFull
    from cvkit.train import TrainConfig, fit

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "r"), epochs=1, precision="fp32",
                      memory_format="contiguous", batch_size=32)
    with pytest.raises(DiskFull, match=r"^the disk is full .* while writing .*model\.safetensors"):
        fit(cfg)
    assert not (tmp_path / "r").exists()  # no epoch was saved: a new run leaves nothing (issue 19.12)
    assert leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- 15. a pickle named .safetensors


def _pickled(path, kind):
    if kind == "dict":
        with open(path, "wb") as f:
            pickle.dump({"a": 1}, f)
    elif kind == "tensor-dict":
        with open(path, "wb") as f:
            pickle.dump({"features.0.0.0.weight": torch.zeros(2)}, f)
    elif kind == "torch-save-list":
        torch.save([torch.zeros(2)], path)
    else:
        torch.save({"features.0.0.0.weight": torch.zeros(16, 1, 3, 3)}, path)  # smallcnn's first conv


@pytest.mark.parametrize("kind", ["dict", "tensor-dict", "torch-save-list", "torch-save"])
def test_a_pickle_renamed_safetensors_is_a_clean_error(data, tmp_path, kind):
    weights = tmp_path / "w.safetensors"
    _pickled(weights, kind)
    result = run(CliRunner(), "train", data, "--out", tmp_path / "r", "--epochs", "1", "--weights", weights, *FAST)
    if kind == "torch-save":  # torch.save of a state dict is a supported weights file, whatever its name
        assert result.exit_code == 0, result.stderr
        return
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("Error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert str(weights) in result.stderr and "internal error" not in result.stderr
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


# ----------------------------------------------------------------------------- 16. options that cannot work


def test_zero_epochs_is_refused(data, tmp_path):
    result = run(CliRunner(), "train", data, "--out", tmp_path / "r", "--epochs", "0", *FAST)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --epochs 0 ")
    assert not (tmp_path / "r").exists()


def test_batch_size_above_the_train_split_is_capped(data, tmp_path):
    from cvkit.files.config import TrainConfig
    from cvkit.train.setup import base_lr

    out = tmp_path / "r"
    result = run(CliRunner(), "train", data, "--out", out, "--epochs", "1", "--precision", "fp32",
                 "--memory-format", "contiguous", "--batch-size", "500")
    assert result.exit_code == 0, result.stderr
    assert "--batch-size 500 is more than the 120 training images: using batches of 120" in result.stderr
    resolved = json.loads((out / "config.json").read_text())["resolved"]
    assert resolved["batch_size"] == 120
    assert resolved["lr"] == pytest.approx(base_lr(TrainConfig(data=str(data)), 120))


def test_a_one_class_dataset_is_refused(tmp_path):
    src = tmp_path / "src"
    for i in range(10):
        make_image(src / "only" / f"{i}.png", seed=i)
    assert run_ok("-q", "prepare", src, "--out", tmp_path / "ds", "--size", "8")
    result = run(CliRunner(), "train", tmp_path / "ds", "--out", tmp_path / "r", "--epochs", "1", *FAST)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ") and "one class" in result.stderr, result.stderr
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------- 17. messages


def test_a_file_as_out_is_called_a_file(data, tmp_path):
    out = tmp_path / "empty.txt"
    out.write_text("")
    result = run(CliRunner(), "train", data, "--out", out, "--epochs", "1", "--force", *FAST)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: --out {out} is a file, not a folder")


def test_resume_without_a_checkpoint(trained, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    (run_dir / "last.ckpt").unlink()
    result = run(CliRunner(), "train", "--resume", run_dir)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {run_dir / 'last.ckpt'} is missing: {run_dir} has no checkpoint to "
                                    f"resume from; start a new run instead")
    assert "to load" not in result.stderr


def test_warnings_do_not_print_before_the_error(data, tmp_path, monkeypatch):
    from cvkit.errors import OptionError
    from cvkit.train import trainer

    def warn_then_fail(*args, **kwargs):
        warnings.warn("a torch-style UserWarning", UserWarning)
        raise OptionError("this run cannot start")

    monkeypatch.setattr(trainer.Trainer, "build", classmethod(warn_then_fail))
    with warnings_printed():
        result = run(CliRunner(), "train", data, "--out", tmp_path / "r", "--epochs", "1", *FAST)
    assert result.exit_code == 2
    assert result.stderr == "Error: this run cannot start\n"


def test_interrupt_says_how_to_resume_and_exits_130(data, tmp_path, monkeypatch):
    from cvkit.train import trainer

    real = trainer.Trainer.train_epoch

    def stop_in_epoch_2(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return real(self, epoch)

    monkeypatch.setattr(trainer.Trainer, "train_epoch", stop_in_epoch_2)
    out = tmp_path / "r"
    result = run(CliRunner(), "-q", "train", data, "--out", out, "--epochs", "3", *FAST)
    assert result.exit_code == 130
    assert result.stderr.replace("\n", "") == (f"Interrupted: interrupted in epoch 2 of 3; epochs 1-1 are saved: "
                                               f"continue with 'cvkit train --resume {out}'")
    monkeypatch.setattr(trainer.Trainer, "train_epoch", real)
    assert run_ok("-q", "train", "--resume", out)


def test_force_keeps_a_folder_with_a_config_json_and_other_files(data, tmp_path):
    """A config.json alone does not make a folder a run that --force may delete."""
    out = tmp_path / "project"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / "thesis.tex").write_text("months of work")
    result = run(CliRunner(), "train", data, "--out", out, "--force", "--epochs", "1", *FAST)
    assert result.exit_code == 2 and "holds files cvkit did not write" in result.stderr
    assert (out / "thesis.tex").read_text() == "months of work"
