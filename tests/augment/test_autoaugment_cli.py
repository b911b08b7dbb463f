"""`cvkit augment --preset randaugment|trivialaugment|autoaugment` (--auto, --auto-ops, --auto-magnitude)
through the CLI: the policy file, its checks, the preview and training with it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cvkit.errors import OptionError
from cvkit.transforms.policy import AugmentPolicy, make_policy
from tests.conftest import FAST, run, run_ok, tree


@pytest.fixture
def ds(data, tmp_path) -> Path:
    copy = tmp_path / "fashion"
    shutil.copytree(data, copy)
    return copy


def policy_of(folder: Path) -> dict:
    return json.loads((folder / "augment.json").read_text())["policy"]


@pytest.mark.parametrize("preset", ["randaugment", "trivialaugment", "autoaugment"])
def test_each_preset_is_written_with_its_policy(ds, runner, preset):
    result = run(runner, "augment", ds, "--preset", preset)
    assert result.exit_code == 0, result.stderr
    assert policy_of(ds) == {**AugmentPolicy().to_json(), "hflip": 0.5, "auto": preset}
    assert preset in result.stderr  # the summary names the policy


def test_randaugment_ops_and_magnitude_are_recorded_and_shown(ds, runner):
    result = run(runner, "augment", ds, "--preset", "randaugment", "--auto-ops", "3", "--auto-magnitude", "14",
                 "--hflip", "0", "--json")
    assert result.exit_code == 0, result.stderr
    written = policy_of(ds)
    assert (written["auto"], written["auto_ops"], written["auto_magnitude"], written["hflip"]) == ("randaugment", 3, 14, 0.0)
    assert json.loads(result.stdout)["policy"] == written
    assert make_policy(written).describe() == "randaugment 3 ops at magnitude 14"
    # --auto on top of another preset: the automatic policy first, then the preset's transforms.
    run_ok("-q", "augment", ds, "--preset", "standard", "--auto", "trivialaugment")
    assert policy_of(ds)["auto"] == "trivialaugment" and policy_of(ds)["erase"] == 0.25


@pytest.mark.parametrize("args, names", [
    (["--preset", "randaugment", "--auto-ops", "-1"], "--auto-ops -1"),
    (["--preset", "randaugment", "--auto-ops", "15"], "--auto-ops 15"),
    (["--preset", "randaugment", "--auto-magnitude", "31"], "--auto-magnitude 31"),
    (["--preset", "randaugment", "--auto-magnitude", "-2"], "--auto-magnitude -2"),
    (["--auto", "randaug"], "--auto randaug must be one of randaugment, trivialaugment, autoaugment or none"),
    (["--preset", "trivialaugment", "--auto-magnitude", "5"], "--auto-magnitude set RandAugment's"),
    (["--auto-ops", "3"], "add --auto randaugment"),
    (["--preset", "randaugmnt"], "--preset randaugmnt"),
])
def test_bad_values_fail_in_one_line_and_write_nothing(ds, runner, args, names):
    before = tree(ds)
    result = run(runner, "augment", ds, *args)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("Error:") and names in result.stderr and "Traceback" not in result.stderr
    assert tree(ds) == before


@pytest.mark.parametrize("edit, needle", [({"auto": 3}, "'auto' must be a name"),
                                          ({"auto": "swirl"}, "--auto swirl"),
                                          ({"auto": "randaugment", "auto_ops": 2.5}, "--auto-ops 2.5")])
def test_a_bad_policy_file_stops_train_with_its_name(ds, tmp_path, runner, edit, needle):
    (ds / "augment.json").write_text(json.dumps({"format": 1, "policy": edit}))
    result = run(runner, "train", ds, "--epochs", "1", "--out", tmp_path / "run", *FAST)
    assert result.exit_code == 2 and "augment.json" in result.stderr and needle in result.stderr
    assert not (tmp_path / "run").exists()


def test_preview_shows_the_policy_at_work(ds, monkeypatch):
    import cvkit.augment.preview as pre
    from cvkit.device import resolve_device

    # Through the CLI: the PNG is written beside the policy.
    assert run_ok("-q", "augment", ds, "--preset", "trivialaugment", "--preview", "4")
    assert (ds / "augment_preview.png").stat().st_size > 1000
    seen = {}
    monkeypatch.setattr(pre, "plot_augment_preview", lambda *args: seen.update(args=args))
    pre.preview(ds, make_policy({"auto": "autoaugment"}), 8, 0, resolve_device("cpu"))
    originals, _, versions, _, described, _ = seen["args"]
    changed = [not np.array_equal(v, o) for o, row in zip(originals, versions) for v in row]
    assert np.mean(changed) > 0.5 and described == "autoaugment"


def test_train_applies_the_preset_and_records_it(ds, tmp_path):
    run_ok("-q", "augment", ds, "--preset", "randaugment", "--hflip", "0", "--auto-magnitude", "20")
    run_ok("-q", "train", ds, "--epochs", "1", "--out", tmp_path / "auto", "--seed", "1", *FAST)
    resolved = json.loads((tmp_path / "auto" / "config.json").read_text())["resolved"]
    assert {k: resolved["augment"][k] for k in ("auto", "auto_ops", "auto_magnitude", "hflip")} == {
        "auto": "randaugment", "auto_ops": 2, "auto_magnitude": 20, "hflip": 0.0}
    assert resolved["augment_source"] == str(ds / "augment.json")
    # The same seed without augmentation trains on other pixels: the policy reached the batches.
    run_ok("-q", "train", ds, "--epochs", "1", "--out", tmp_path / "none", "--seed", "1", "--augment", "none", *FAST)
    losses = [pd.read_csv(tmp_path / name / "metrics.csv")["train_loss"].iloc[0] for name in ("auto", "none")]
    assert losses[0] != losses[1]


@pytest.mark.parametrize("task", ["localize", "segment"])
def test_tasks_whose_targets_move_refuse_the_automatic_policies(task):
    from cvkit.tasks import TaskSpec, create_task

    with pytest.raises(OptionError, match="--auto none"):
        create_task(task, TaskSpec(["a", "b"])).check_policy(make_policy({"auto": "randaugment"}))
    create_task("classify", TaskSpec(["a", "b"])).check_policy(make_policy({"auto": "randaugment"}))
