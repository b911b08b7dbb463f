"""The file contracts: one typed reader per format, refusing what it cannot trust."""

from __future__ import annotations

import json

import pytest

from cvkit.errors import ManifestError
from cvkit.files.config import TrainConfig
from cvkit.files.dataset import AugmentFile, DatasetInfo, Stats


def test_round_trips(tmp_path):
    info = DatasetInfo("folders", [28, 28], 1, "crop", 0, 0.1, 0.1, 0, {"train": 3})
    info.write(tmp_path)
    assert DatasetInfo.read(tmp_path) == info
    stats = Stats([0.5], [0.25], "train", 3, [28, 28], 1)
    stats.write(tmp_path)
    assert Stats.read(tmp_path) == stats
    cfg = TrainConfig(data="d", out=str(tmp_path), epochs=3)
    cfg.write(tmp_path)
    assert TrainConfig.read(tmp_path) == cfg
    assert json.loads((tmp_path / "stats.json").read_text())["format"] == 1


@pytest.mark.parametrize("edit, message", [
    ({"format": 2}, "has format 2"),
    ({"channels": "one"}, "'channels' is \"one\""),
    ({"colour": True}, "unknown key(s) colour"),
    ({"channels": 2}, "'channels' must be 1 or 3"),
])
def test_a_bad_dataset_json_is_refused_with_the_fix(tmp_path, edit, message):
    DatasetInfo("folders", [28, 28], 1).write(tmp_path)
    data = json.loads((tmp_path / "dataset.json").read_text())
    data.update(edit)
    (tmp_path / "dataset.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError) as error:
        DatasetInfo.read(tmp_path)
    assert message in str(error.value) and "rerun 'cvkit prepare'" in str(error.value)


def test_stats_need_a_positive_std_and_augment_names_are_checked(tmp_path):
    (tmp_path / "stats.json").write_text(json.dumps({"format": 1, "mean": [0.5], "std": [0.0]}))
    with pytest.raises(ManifestError, match="std above 0"):
        Stats.read(tmp_path)
    (tmp_path / "augment.json").write_text(json.dumps({"format": 1, "policy": {"hflip": 0.5, "swirl": 1}}))
    with pytest.raises(ManifestError, match="unknown augmentation"):
        AugmentFile.read(tmp_path, {"hflip"})
    (tmp_path / "augment.json").write_text(json.dumps({"format": 1, "policy": {"hflip": "yes"}}))
    with pytest.raises(ManifestError, match="'hflip' must be a number"):
        AugmentFile.read(tmp_path, {"hflip"})


def test_a_folder_where_a_json_file_should_be(tmp_path):
    (tmp_path / "stats.json").mkdir()
    with pytest.raises(ManifestError, match="is a folder"):
        Stats.read(tmp_path)
