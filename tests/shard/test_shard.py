"""``--shard I/N`` for evaluate, retrieve index and cam, and the merges: N shares give what one run gives."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cvkit.data.selection import shard_range
from tests.conftest import SAMPLE, run


def test_shares_cover_every_position_once_in_order():
    for n in (0, 1, 7, 40):
        for count in (1, 3, 8):
            got = [i for k in range(count) for i in shard_range(n, k, count)]
            assert got == list(range(n))
            sizes = [len(shard_range(n, k, count)) for k in range(count)]
            assert max(sizes) - min(sizes) <= 1


def _rounded(value):
    if isinstance(value, float):
        return float(f"{value:.5g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def test_evaluate_shards_merge_into_the_unsharded_report(trained, tmp_path, runner):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert run(runner, "-q", "evaluate", trained, "--split", "val", "--out", whole).exit_code == 0
    for i in (2, 0):
        assert run(runner, "-q", "evaluate", trained, "--split", "val", "--out", parts, "--shard", f"{i}/3").exit_code == 0
    result = run(runner, "evaluate", trained, "--split", "val", "--out", parts, "--merge")
    assert result.exit_code == 2 and "shard 1/3 is missing" in result.stderr
    assert run(runner, "-q", "evaluate", trained, "--split", "val", "--out", parts, "--shard", "1/3").exit_code == 0
    assert run(runner, "-q", "evaluate", trained, "--split", "val", "--out", parts, "--merge").exit_code == 0
    a, b = (json.loads((f / "metrics.json").read_text()) for f in (whole, parts))
    assert b.pop("shards") == 3 and b.pop("data") and a.pop("data")
    # Equal up to float32 rounding: oneDNN may pick another kernel for another batch size (it does on Intel CPUs)
    assert _rounded(a) == _rounded(b)
    for name in ("predictions.csv", "confusion_matrix.csv", "top_losses.csv"):
        x, y = (pd.read_csv(f / name) for f in (whole, parts))
        pd.testing.assert_frame_equal(x, y, check_exact=False, rtol=1e-4, atol=1e-5, obj=name)
    assert all((parts / f"shard-{i}-of-3" / "shard.json").is_file() for i in range(3))  # the shares stay


def test_retrieve_index_shards_merge_into_the_unsharded_index(trained, data, tmp_path, runner):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert run(runner, "-q", "retrieve", "index", trained, data, "--out", whole).exit_code == 0
    assert run(runner, "-q", "retrieve", "index", trained, data, "--out", parts, "--shard", "1/2").exit_code == 0
    result = run(runner, "retrieve", "merge", parts)
    assert result.exit_code == 2 and "shard 0/2 is missing" in result.stderr
    assert run(runner, "-q", "retrieve", "index", trained, data, "--out", parts, "--shard", "0/2").exit_code == 0
    assert run(runner, "-q", "retrieve", "merge", parts).exit_code == 0
    for name in ("embeddings.npy", "items.csv", "meta.json"):
        assert (whole / name).read_bytes() == (parts / name).read_bytes(), name
    query = run(runner, "-q", "retrieve", "query", parts, SAMPLE / "fashion" / "bag" / "000.png", "-k", "3",
                "--out", tmp_path / "q")
    assert query.exit_code == 0, query.stderr


def test_cam_shards_explain_each_input_once_under_the_unsharded_names(trained, tmp_path, runner):
    folder = SAMPLE / "fashion" / "bag"
    for i in range(3):
        assert run(runner, "-q", "cam", trained, folder, "--out", tmp_path / "cam", "--shard", f"{i}/3").exit_code == 0
    assert run(runner, "-q", "cam", trained, folder, "--out", tmp_path / "whole").exit_code == 0
    tables = [pd.read_csv(tmp_path / "cam" / f"shard-{i}-of-3" / "cams.csv") for i in range(3)]
    assert sorted(pd.concat(tables)["path"]) == sorted(pd.read_csv(tmp_path / "whole" / "cams.csv")["path"])
    names = sorted(p.name for i in range(3) for p in (tmp_path / "cam" / f"shard-{i}-of-3").glob("*_gradcam.npy"))
    assert names == sorted(p.name for p in (tmp_path / "whole").glob("*_gradcam.npy"))


@pytest.mark.parametrize("value,message", [("3/3", "I must be from 0 to N-1"), ("x", "must be I/N"),
                                           ("1/0", "I must be from 0 to N-1"), ("-1/2", "I must be from 0")])
def test_bad_shard_values_are_refused(trained, tmp_path, runner, value, message):
    result = run(runner, "evaluate", trained, "--split", "val", "--out", tmp_path / "e", "--shard", value)
    assert result.exit_code == 2 and message in result.stderr and not (tmp_path / "e").exists()
